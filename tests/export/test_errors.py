"""Bad inputs fail with one clear message: disagreeing masks, unbuildable models, damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from growprune.export import ExportError, export_model, load, read_metadata
from growprune.models import build_model
from tests.export.conftest import HIDDEN, pruned_mlp, rewrite_export, write_run


def test_masks_and_weights_disagree(tmp_path: Path) -> None:
    model = pruned_mlp()
    with torch.no_grad():
        pruned = (~model.features[3].weight_mask).nonzero()[0]
        model.features[3].weight[tuple(pruned)] = 0.5
    write_run(tmp_path / "run", model, {"name": "mlp", "args": {"hidden": HIDDEN}})
    with pytest.raises(ExportError, match=r"masks and weights disagree in 'features.3.weight': 1 weight"):
        export_model(tmp_path / "run", tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_model_not_in_registry_says_what_is_missing(tmp_path: Path) -> None:
    write_run(tmp_path / "run", pruned_mlp(), {"name": "my_net", "args": {"depth": 3}})
    with pytest.raises(
        ExportError, match=r"model 'my_net' is not in growprune's model registry.*model=<your module>"
    ):
        export_model(tmp_path / "run", tmp_path / "m.safetensors")


def test_argument_the_recipe_lacks_is_named_and_can_be_supplied(tmp_path: Path) -> None:
    model = pruned_mlp(hidden=[64, 32])
    write_run(tmp_path / "run", model, {"name": "mlp", "args": {}})  # hidden not recorded
    with pytest.raises(ExportError, match=r"does not match the stored weights.*--model-arg KEY=VALUE"):
        export_model(tmp_path / "run", tmp_path / "m.safetensors")
    export_model(tmp_path / "run", tmp_path / "m.safetensors", model_args={"hidden": [64, 32]})
    assert load(tmp_path / "m.safetensors").features[3].weight.shape == (32, 64)


def test_cli_reports_export_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from growprune.cli import main

    write_run(tmp_path / "run", pruned_mlp(), {"name": "my_net", "args": {}})
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "my_net" in err


def test_missing_run_and_empty_run(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such run directory"):
        export_model(tmp_path / "nope", tmp_path / "m.safetensors")
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ExportError, match="no checkpoints found"):
        export_model(tmp_path / "empty", tmp_path / "m.safetensors")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run", pruned_mlp(), {"name": "mlp", "args": {"hidden": HIDDEN}})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ExportError, match="corrupt or truncated"):
        export_model(tmp_path / "run", tmp_path / "m.safetensors")


def test_truncated_file(exported: Path) -> None:
    exported.write_bytes(exported.read_bytes()[:-100])
    with pytest.raises(
        ExportError, match=rf"{exported.name}: not a readable safetensors file, it is truncated"
    ):
        load(exported)


def test_bad_header(exported: Path) -> None:
    data = bytearray(exported.read_bytes())
    data[8:20] = b"\x00garbage!!\xff\xfe"
    exported.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="not a readable safetensors file"):
        load(exported)


def test_flipped_byte_in_the_data(exported: Path) -> None:
    data = bytearray(exported.read_bytes())
    data[-5] ^= 0xFF
    exported.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="checksum mismatch"):
        load(exported)


def test_missing_values_tensor(exported: Path) -> None:
    rewrite_export(exported, lambda t, m: t.pop("features.3.weight::values"))
    with pytest.raises(
        ExportError, match=r"tensor 'features.3.weight::values' named in the layout is missing"
    ):
        load(exported)


def test_wrong_shape_in_metadata(exported: Path) -> None:
    def edit(tensors: dict, meta: dict) -> None:
        layout = json.loads(meta["growprune.layout"])
        layout["features.3.weight"]["shape"] = [100, 299]
        meta["growprune.layout"] = json.dumps(layout)

    rewrite_export(exported, edit)
    with pytest.raises(ExportError, match=r"features.3.weight::mask' is .* but the layout says"):
        load(exported)


def test_not_a_growprune_file_and_newer_format(tmp_path: Path, exported: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(ExportError, match="without growprune metadata"):
        load(plain)
    rewrite_export(exported, lambda t, m: m.update({"growprune.format_version": "99"}))
    with pytest.raises(ExportError, match="format 99.*upgrade growprune"):
        read_metadata(exported)


def test_unknown_builder_in_file_says_to_pass_model(exported: Path) -> None:
    def edit(tensors: dict, meta: dict) -> None:
        meta["growprune.model"] = json.dumps({"name": "gone_net", "args": {"width": 2}})

    rewrite_export(exported, edit)
    with pytest.raises(
        ExportError, match=r"needs model builder 'gone_net' with arguments \{'width': 2\}.*model="
    ):
        load(exported)


def test_live_export_without_builder_needs_model(tmp_path: Path) -> None:
    model = pruned_mlp(hidden=[8])
    export_model(model, tmp_path / "m.safetensors")
    with pytest.raises(ExportError, match="pass model=<an nn.Module"):
        load(tmp_path / "m.safetensors")


def test_supplied_model_of_another_shape(exported: Path) -> None:
    from growprune.models import build_model

    with pytest.raises(ExportError, match="do not fit the model: .*features.1.weight: model"):
        load(exported, model=build_model("mlp", in_features=784, hidden=[200, 100]))


def test_bad_format_and_dtype(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="format must be one of"):
        export_model(run_dir, tmp_path / "m", format="zip")
    with pytest.raises(ExportError, match="dtype must be one of"):
        export_model(run_dir, tmp_path / "m", dtype="int8")


def test_model_registered_with_register_model_exports_and_loads(tmp_path: Path) -> None:
    """The fix the registry error names works: register the builder, then export and load by name."""
    from growprune.models import register_model
    from growprune.models.registry import _BUILDERS

    def my_net(hidden: list[int], in_features: int = 784, num_classes: int = 10) -> torch.nn.Module:
        return build_model("mlp", in_features=in_features, hidden=hidden, num_classes=num_classes)

    model = pruned_mlp()
    write_run(tmp_path / "run", model, {"name": "my_net", "args": {"hidden": HIDDEN}})
    with pytest.raises(ExportError, match=r"register_model\(name, builder\)"):
        export_model(tmp_path / "run", tmp_path / "m.safetensors")
    register_model("my_net", my_net)
    try:
        export_model(tmp_path / "run", tmp_path / "m.safetensors")
        loaded = load(tmp_path / "m.safetensors")
    finally:
        _BUILDERS.pop("my_net", None)
    assert torch.equal(loaded.features[1].weight, model.features[1].weight)
