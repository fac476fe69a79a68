"""A crafted export cannot make ``load`` allocate what the file does not hold, nor crash it.

The metadata (model builder and arguments, layout, sparsity table) is not covered by the checksum,
and whoever crafts a file can recompute the checksum anyway. So the loader trusts nothing in it:
every layout entry is checked against the tensors stored, the model is built on the ``meta``
device first and compared tensor by tensor with the file, and only then built for real. Every
way the metadata can be wrong is one ``ExportError`` line, never another exception.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from growprune.export import ExportError, export_model, load, read_metadata
from tests.export.conftest import HIDDEN, rewrite_export
from tests.helpers import REPO, run_captured

MODEL = {"name": "mlp", "args": {"in_features": 784, "hidden": HIDDEN, "num_classes": 10}}

Edit = Callable[[dict[str, torch.Tensor], dict[str, str]], None]


def set_model(spec: object) -> Edit:
    def edit(tensors: dict, meta: dict) -> None:
        meta["growprune.model"] = spec if isinstance(spec, str) else json.dumps(spec)

    return edit


def set_args(**args: object) -> Edit:
    return set_model({"name": "mlp", "args": {**MODEL["args"], **args}})


def set_raw(field: str, text: str) -> Edit:
    def edit(tensors: dict, meta: dict) -> None:
        meta[f"growprune.{field}"] = text

    return edit


def set_entry(key: str, **changes: object) -> Edit:
    def edit(tensors: dict, meta: dict) -> None:
        layout = json.loads(meta["growprune.layout"])
        layout[key] = {**layout[key], **changes} if isinstance(layout[key], dict) else changes
        meta["growprune.layout"] = json.dumps(layout)

    return edit


def replace_entry(key: str, entry: object) -> Edit:
    def edit(tensors: dict, meta: dict) -> None:
        layout = json.loads(meta["growprune.layout"])
        layout[key] = entry
        meta["growprune.layout"] = json.dumps(layout)

    return edit


def huge_bitmask_shape(tensors: dict, meta: dict) -> None:
    """2**40 x 2**40 overflows int64 to 0 elements: empty mask and values then "match" it."""
    set_entry("features.1.weight", shape=[2**40, 2**40], kept=0)(tensors, meta)
    tensors["features.1.weight::mask"] = torch.zeros(0, dtype=torch.uint8)
    tensors["features.1.weight::values"] = torch.zeros(0)


def drop_tensor(key: str) -> Edit:
    def edit(tensors: dict, meta: dict) -> None:
        layout = json.loads(meta["growprune.layout"])
        del layout[key]
        tensors.pop(key)
        meta["growprune.layout"] = json.dumps(layout)

    return edit


def add_tensor(tensors: dict, meta: dict) -> None:
    layout = json.loads(meta["growprune.layout"])
    layout["extra.weight"] = {"shape": [4], "dtype": "float32", "encoding": "dense"}
    tensors["extra.weight"] = torch.ones(4)
    meta["growprune.layout"] = json.dumps(layout)


def lie_in_sparsity_table(tensors: dict, meta: dict) -> None:
    table = json.loads(meta["growprune.sparsity"])
    table["layers"]["features.1.weight"]["kept_by_mask"] += 1000
    meta["growprune.sparsity"] = json.dumps(table)


def edit_sparsity_table(change: Callable[[dict], None]) -> Edit:
    def edit(tensors: dict, meta: dict) -> None:
        table = json.loads(meta["growprune.sparsity"])
        change(table)
        meta["growprune.sparsity"] = json.dumps(table)

    return edit


def float64_dense(tensors: dict, meta: dict) -> None:
    set_entry("classifier.bias", dtype="float64")(tensors, meta)
    tensors["classifier.bias"] = tensors["classifier.bias"].double()


DEEP = "[" * 100_000 + "]" * 100_000

VARIANTS: list[tuple[str, Edit, str]] = [
    # the model builder and its arguments
    ("model-a-list", set_model("[1, 2]"), r"model .*not a mapping"),
    ("model-a-string", set_model('"mlp"'), r"model .*not a mapping"),
    ("model-name-not-a-string", set_model({"name": 5, "args": {}}), r"name"),
    ("model-args-a-list", set_model({"name": "mlp", "args": [1, 2]}), r"args"),
    ("model-args-unknown-key", set_args(depth=3), r"cannot rebuild the model 'mlp'"),
    ("model-args-string-for-list", set_args(hidden="abc"), r"cannot rebuild the model 'mlp'"),
    ("model-args-nested-junk", set_args(hidden=[[[1]], {"a": None}]), r"cannot rebuild the model 'mlp'"),
    ("model-args-negative", set_args(hidden=[-300, 100]), r"cannot rebuild the model 'mlp'"),
    ("model-args-float", set_args(hidden=[300.5, 100]), r"cannot rebuild the model 'mlp'"),
    ("model-args-bool", set_args(hidden=[True, 100]), r"cannot rebuild the model 'mlp'"),
    # the largest value build_model's argument check lets through (larger ones: test_model_args.py)
    ("model-args-huge-input", set_args(in_features=2**31 - 1), r"'features.1.weight' is \(300, 2147483647\)"),
    ("model-args-past-the-bound", set_args(in_features=10**12), r"in_features is 10+, out of range"),
    ("model-args-fewer-layers", set_args(hidden=[300]), r"does not match the tensors in the file"),
    (
        "model-huge-integer-literal",
        set_model('{"name": "mlp", "args": {"hidden": [' + "9" * 5000 + "]}}"),
        r"model",
    ),
    ("model-deeply-nested", set_raw("model", DEEP), r"metadata field model"),
    # the layout: what each stored tensor is
    ("layout-deeply-nested", set_raw("layout", DEEP), r"metadata field layout"),
    ("layout-a-list", set_raw("layout", "[1, 2]"), r"layout is not a mapping"),
    ("entry-a-string", replace_entry("classifier.bias", "junk"), r"layout entry for 'classifier.bias'"),
    ("entry-null", replace_entry("classifier.bias", None), r"layout entry for 'classifier.bias'"),
    ("shape-a-string", set_entry("classifier.bias", shape="10"), r"'classifier.bias' .*shape '10'"),
    ("shape-nested-junk", set_entry("classifier.bias", shape=[[10], {"a": 1}]), r"'classifier.bias' .*shape"),
    ("shape-float", set_entry("features.1.weight", shape=[300.5, 784]), r"'features.1.weight' .*shape"),
    ("shape-negative", set_entry("features.1.weight", shape=[-300, 784]), r"'features.1.weight' .*shape"),
    ("shape-beyond-int64", set_entry("features.1.weight", shape=[10**20, 1]), r"'features.1.weight' .*shape"),
    ("shape-overflowing-int64", huge_bitmask_shape, r"'features.1.weight'"),
    ("shape-huge-dimension", set_entry("features.1.weight", shape=[300, 784 * 10**9]), r"features.1.weight"),
    ("shape-too-many-dims", set_entry("classifier.bias", shape=[1] * 1000), r"'classifier.bias' .*shape"),
    ("dtype-unknown", set_entry("classifier.bias", dtype="float128"), r"'classifier.bias'"),
    ("dtype-not-a-string", set_entry("classifier.bias", dtype=[1]), r"'classifier.bias'"),
    ("dtype-not-the-files", float64_dense, r"'classifier.bias' is float64 but the file's dtype is fp32"),
    ("encoding-unknown", set_entry("classifier.bias", encoding="zip"), r"unknown encoding 'zip'"),
    ("encoding-not-a-string", set_entry("classifier.bias", encoding={"a": 1}), r"encoding"),
    ("kept-count-lies", set_entry("features.1.weight", kept=5), r"'features.1.weight'.*kept"),
    ("kept-count-a-string", set_entry("features.1.weight", kept="all"), r"'features.1.weight'.*kept"),
    (
        "entry-missing",
        drop_tensor("classifier.bias"),
        r"'classifier.bias' is \(10,\) in the model but not in the file",
    ),
    ("entry-extra", add_tensor, r"the file holds 'extra.weight', which the model lacks"),
    # the rest of the metadata
    ("sparsity-table-lies", lie_in_sparsity_table, r"sparsity table .*'features.1.weight'"),
    (
        "sparsity-total-lies",
        edit_sparsity_table(lambda t: t.update(zeros=0)),
        r"sparsity table says zeros=0 in all",
    ),
    (
        "sparsity-row-junk",
        edit_sparsity_table(lambda t: t["layers"].update({"features.1.weight": "junk"})),
        r"sparsity table row for 'features.1.weight' is 'junk'",
    ),
    (
        "sparsity-unknown-layer",
        edit_sparsity_table(lambda t: t["layers"].update({"ghost.weight": {}})),
        r"sparsity table lists 'ghost.weight'",
    ),
    ("sparsity-a-list", set_raw("sparsity", "[1]"), r"sparsity .*not a mapping"),
    ("format-version-junk", set_raw("format_version", "1.5"), r"format_version"),
    ("format-version-huge", set_raw("format_version", "9" * 5000), r"format_version"),
    ("source-deeply-nested", set_raw("source", DEEP), r"metadata field source"),
]


@pytest.mark.parametrize(("edit", "pattern"), [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_crafted_metadata_is_one_export_error(exported: Path, edit: Edit, pattern: str) -> None:
    rewrite_export(exported, edit)
    start = time.perf_counter()
    with pytest.raises(ExportError, match=pattern) as info:
        load(exported)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert type(info.value) is ExportError
    assert "\n" not in message and len(message) < 1000, message
    assert message.startswith(str(exported)), message


def test_read_metadata_refuses_junk_too(exported: Path) -> None:
    """Readers of the header alone (read_metadata) get the same checks of its structure."""
    rewrite_export(exported, set_model("[1, 2]"))
    with pytest.raises(ExportError, match="not a mapping"):
        read_metadata(exported)


def test_a_long_list_of_layers_is_refused_without_building_them(exported: Path) -> None:
    """Building 100 000 layers takes over half a minute even on the meta device: it stops early."""
    rewrite_export(exported, set_args(hidden=[1] * 100_000))
    start = time.perf_counter()
    with pytest.raises(ExportError, match=r"more parameters, buffers and modules than") as info:
        load(exported)
    assert time.perf_counter() - start < 10
    assert len(str(info.value)) < 1000


def test_a_large_buffer_the_file_does_not_store_is_refused(tmp_path: Path) -> None:
    """A non-persistent buffer (the Transformer's position table) is not in the file; its size is bounded."""
    from growprune.models import build_model

    model = build_model(
        "transformer", vocab_size=32, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=16
    )
    out = tmp_path / "t.safetensors"
    args = {
        "vocab_size": 32,
        "d_model": 16,
        "heads": 2,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "ffn_dim": 16,
    }
    export_model(model, out, format="dense", model_name="transformer", model_args=args)
    assert load(out) is not None
    # the largest value build_model's argument check lets through (larger ones: test_model_args.py)
    rewrite_export(out, set_model({"name": "transformer", "args": {**args, "max_positions": 2**31 - 1}}))
    with pytest.raises(
        ExportError, match=r"derives buffers not stored in the file \('positions' is \(2147483647, 16\)\)"
    ):
        load(out)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc and RLIMIT_AS")
def test_huge_model_in_metadata_does_not_allocate(exported: Path) -> None:
    """The file holds a 300-100 MLP; its metadata claims 1e7-1e7 (31 GB for the first layer alone).

    Run with the address space capped at 1 GiB above what the process has mapped after import: an
    attempt to allocate the claimed model fails there with MemoryError/RuntimeError instead of
    taking the machine down, and the test sees that it was not an ExportError.
    """
    rewrite_export(exported, set_args(hidden=[10_000_000, 10_000_000]))
    script = r"""
import json, re, resource, sys, time
from growprune.export import ExportError, load
size = int(re.search(r"VmSize:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
start = time.perf_counter()
try:
    load(sys.argv[1])
    result = {"type": None}
except BaseException as err:
    result = {"type": type(err).__name__, "export_error": isinstance(err, ExportError), "message": str(err)}
result["seconds"] = time.perf_counter() - start
print(json.dumps(result))
"""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = run_captured([sys.executable, "-c", script, str(exported)], env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["export_error"], result
    assert "'features.1.weight' is (10000000, 784) in the model, (300, 784) in the file" in result["message"]
    assert "metadata was altered or written by something other than growprune" in result["message"]
    assert result["seconds"] < 10


def test_builder_that_cannot_build_on_meta_says_to_pass_the_model(tmp_path: Path) -> None:
    """The price of checking before allocating: a builder that reads tensor values while building
    cannot be checked, so load asks for the module instead of building it unchecked."""
    from growprune.models import build_model, register_model
    from growprune.models.registry import _BUILDERS

    def value_reading_net(width: int = 8) -> torch.nn.Module:
        scale = torch.ones(1).sum().item()  # fails on the meta device
        return build_model("mlp", in_features=4, hidden=[int(width * scale)], num_classes=2)

    register_model("value_reading_net", value_reading_net)
    try:
        model = value_reading_net()
        out = tmp_path / "v.safetensors"
        export_model(model, out, format="dense", model_name="value_reading_net", model_args={"width": 8})
        with pytest.raises(
            ExportError, match=r"cannot build the model 'value_reading_net' .* on the meta device.*model="
        ):
            load(out)
        loaded = load(out, model=value_reading_net())
    finally:
        _BUILDERS.pop("value_reading_net", None)
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)
