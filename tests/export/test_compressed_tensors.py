"""``export_model(..., format="compressed-tensors")``: a tiny Llama sparsified by growprune (in
memory, or trained by the Hugging Face Trainer callback) is written as a compressed-tensors
directory, and ``AutoModelForCausalLM.from_pretrained`` (with compressed-tensors installed)
loads it back with the same weights, zeros where the masks prune, and the same logits.

The round trips need the versions the ``llm`` extra pins (compressed-tensors 0.14 with
transformers 4.55, see growprune/export/compressed.py); elsewhere they skip with the reason the
export itself gives, except under ``GROWPRUNE_REQUIRE_LLM=1``: ``make test-llm`` (which CI runs)
runs them in an environment of their own with that pair and sets it, so they fail there rather
than skip. The refusals are checked
wherever transformers is installed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

import growprune as gp
from growprune.cli import main
from growprune.export import ExportError
from growprune.export.compressed import FORMAT, _library, is_two_four
from tests.tiny_transformers import Tokens, cpu_training_args, llama

pytest.importorskip("transformers")


def _stack_problem() -> str | None:
    try:
        _library()
    except ExportError as err:
        return str(err)
    return None


needs_stack = pytest.mark.skipif(
    _stack_problem() is not None and os.environ.get("GROWPRUNE_REQUIRE_LLM") != "1",
    reason=str(_stack_problem()),
)
DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"
IDS = torch.randint(1, 100, (2, 12), generator=torch.Generator().manual_seed(0))


def sparse_llama(sparsity: float = 0.5, pattern: str = "unstructured", **config: Any) -> torch.nn.Module:
    """A tiny Llama pruned by growprune's OneShot; its sparsifier is kept as ``model.sparsifier_``."""
    model = llama(seed=0, **config).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.sparsifier_ = gp.OneShot(model, optimizer, sparsity=sparsity, pattern=pattern)
    return model


def masks_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """{weight key: bool mask} as the sparsifier holds them (not as the export reads them)."""
    masks = {name: mask.clone() for name, mask in model.sparsifier_.masks.items()}
    assert masks and all(mask.dtype == torch.bool for mask in masks.values())
    return masks


def load_back(out: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()


def check_round_trip(model: torch.nn.Module, out: Path, layout: str) -> None:
    """The directory holds `layout`, every pruned weight compressed (no dense copy), and loads
    back to the same weights and logits, with zeros exactly where the masks prune."""
    masks = masks_of(model)
    config = json.loads((out / "config.json").read_text())
    sparsity = config["quantization_config"]["sparsity_config"]
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert sparsity["format"] == layout
    assert sorted(sparsity["targets"]) == sorted(k.removesuffix(".weight") for k in masks)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    for key in masks:
        stem = key.removesuffix(".weight")
        assert key not in keys and {f"{stem}.bitmask", f"{stem}.compressed", f"{stem}.shape"} <= keys

    loaded = load_back(out)
    state, expected = loaded.state_dict(), model.state_dict()
    for key, mask in masks.items():
        assert torch.equal(state[key], expected[key]), key
        assert not state[key][~mask].any(), f"{key}: nonzero where the mask prunes"
        assert state[key][mask].count_nonzero() > 0.9 * mask.sum(), f"{key}: kept weights lost"
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).logits, model(IDS).logits)


@needs_stack
def test_unstructured_50_round_trip(tmp_path: Path) -> None:
    model = sparse_llama(0.5)
    summary = gp.export_model(model, tmp_path / "out", format=FORMAT)
    assert summary.format == FORMAT and abs(summary.sparsity - 0.5) < 1e-3
    assert summary.pruned_layers == len(masks_of(model)) == 15  # 7 Linears per layer + lm_head
    check_round_trip(model, tmp_path / "out", "sparse-bitmask")


@needs_stack
def test_two_four_uses_the_24_layout(tmp_path: Path) -> None:
    model = sparse_llama(pattern="2:4")
    assert all(is_two_four(m) for m in masks_of(model).values())
    gp.export_model(model, tmp_path / "out", format=FORMAT)
    check_round_trip(model, tmp_path / "out", "sparse-24-bitmask")


@needs_stack
def test_other_nm_patterns_use_the_bitmask_layout(tmp_path: Path) -> None:
    """4:8 is N:M but not 2:4 (a group of 4 may keep 3 or 4): sparse-24-bitmask would drop
    weights, so the general bitmask is written."""
    model = sparse_llama(pattern="4:8")
    assert not all(is_two_four(m) for m in masks_of(model).values())
    gp.export_model(model, tmp_path / "out", format=FORMAT)
    check_round_trip(model, tmp_path / "out", "sparse-bitmask")


@needs_stack
def test_dtype_is_stored_and_recorded(tmp_path: Path) -> None:
    """bf16: the weights are stored cast, config.json says so, and ``torch_dtype="auto"`` loads them as is."""
    from transformers import AutoModelForCausalLM

    model = sparse_llama()
    summary = gp.export_model(model, tmp_path / "out", format=FORMAT, dtype="bf16")
    assert summary.dtype == "bf16"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", torch_dtype="auto")
    assert loaded.dtype == torch.bfloat16
    state, expected = loaded.state_dict(), model.state_dict()
    for key, mask in masks_of(model).items():
        assert torch.equal(state[key], expected[key].to(torch.bfloat16)), key
        assert not state[key][~mask].any(), key


def test_is_two_four() -> None:
    assert is_two_four(torch.tensor([[1, 0, 1, 0, 0, 0, 1, 1]], dtype=torch.bool))
    assert not is_two_four(torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool))
    assert not is_two_four(torch.ones(2, 6, dtype=torch.bool))  # rows not made of groups of 4


@needs_stack
@pytest.mark.parametrize("sparsity, bound", [(0.5, 0.6), (0.8, 0.3)])
def test_files_are_smaller_than_the_dense_save(tmp_path: Path, sparsity: float, bound: float) -> None:
    """The export's safetensors against the dense model's own ``save_pretrained`` (fp32); the
    Linear weights dominate this Llama (hidden 128), as they do any real LLM's."""
    config = {"hidden_size": 128, "intermediate_size": 256}
    llama(seed=0, **config).save_pretrained(tmp_path / "dense")  # no sparsifier: no mask buffers saved
    model = sparse_llama(sparsity, **config)
    gp.export_model(model, tmp_path / "sparse", format=FORMAT)
    dense = (tmp_path / "dense" / "model.safetensors").stat().st_size
    sparse = (tmp_path / "sparse" / "model.safetensors").stat().st_size
    print(f"sparsity {sparsity}: {sparse} / {dense} bytes = {sparse / dense:.3f}")
    assert sparse / dense < bound


def trainer_run(tmp_path: Path) -> tuple[torch.nn.Module, Any, Path]:
    """A tiny Llama trained 4 steps by transformers.Trainer with the growprune callback, a
    checkpoint (with the callback's masks) saved at the last step."""
    pytest.importorskip("accelerate")
    from transformers import Trainer

    from growprune.integrations.huggingface import SparsityCallback

    torch.manual_seed(0)
    model = llama()
    callback = SparsityCallback("gmp", sparsity=0.5)
    args = cpu_training_args(tmp_path / "run", max_steps=4, save_strategy="steps", save_steps=4)
    Trainer(model=model, args=args, train_dataset=Tokens(16), callbacks=[callback]).train()
    model.sparsifier_ = callback.sparsifier
    return model.eval(), callback, tmp_path / "run"


@needs_stack
def test_trainer_callback_model_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The callback's export, ``export_model`` of the Trainer's output directory (its newest
    checkpoint and the masks saved with it) and ``growprune export`` all give the trained model."""
    model, callback, run = trainer_run(tmp_path)
    assert abs(gp.sparsity_report(model).overall - 0.5) < 1e-3
    callback.export(tmp_path / "from-callback", format=FORMAT)
    check_round_trip(model, tmp_path / "from-callback", "sparse-bitmask")
    summary = gp.export_model(run, tmp_path / "from-run", format=FORMAT)
    assert summary.source == f"Trainer checkpoint {run / 'checkpoint-4'}"
    check_round_trip(model, tmp_path / "from-run", "sparse-bitmask")
    assert main(["export", str(run), "--format", FORMAT, "--out", str(tmp_path / "cli")]) == 0
    assert f"wrote {tmp_path / 'cli'} (compressed-tensors, fp32)" in capsys.readouterr().out
    check_round_trip(model, tmp_path / "cli", "sparse-bitmask")


@needs_stack
def test_growprune_run_of_a_registered_transformers_model(tmp_path: Path) -> None:
    """A growprune checkpoint whose recipe names a registered PreTrainedModel builder is rebuilt,
    loaded with its weights and exported with the masks it saved."""
    from growprune.models import register_model
    from growprune.models.registry import _BUILDERS
    from tests.export.conftest import write_run

    model = sparse_llama()
    register_model("ct_tiny_llama", lambda: llama(seed=1))  # other initial weights: the checkpoint's win
    try:
        write_run(tmp_path / "run", model, {"name": "ct_tiny_llama", "args": {}})
        summary = gp.export_model(tmp_path / "run", tmp_path / "out", format=FORMAT)
    finally:
        _BUILDERS.pop("ct_tiny_llama", None)
    assert summary.source == f"checkpoint {tmp_path / 'run' / 'checkpoints' / 'final.pt'}"
    check_round_trip(model, tmp_path / "out", "sparse-bitmask")


@needs_stack
def test_export_doc_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = next(b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if FORMAT in b)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, str(DOC), "exec"), namespace)
    assert (tmp_path / "llama-sparse" / "model.safetensors").is_file()


# --- what cannot be exported: one line each, nothing written ---


def test_refuses_a_model_that_is_not_a_transformers_model(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.5)
    with pytest.raises(ExportError, match=r"needs a Hugging Face transformers PreTrainedModel.*Sequential"):
        gp.export_model(model, tmp_path / "out", format=FORMAT)
    assert not (tmp_path / "out").exists()


def test_names_the_extra_when_compressed_tensors_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "compressed_tensors", None)  # `import compressed_tensors` fails
    with pytest.raises(ExportError) as caught:
        gp.export_model(sparse_llama(), tmp_path / "out", format=FORMAT)
    assert str(caught.value) == (
        "format 'compressed-tensors' needs the 'llm' extra (missing module 'compressed_tensors'): "
        "pip install 'growprune[llm]'"
    )


@needs_stack
def test_refuses_a_pruned_tensor_the_format_cannot_hold(tmp_path: Path) -> None:
    """compressed-tensors compresses a module's 2-D weight; a ViT's pruned patch-embedding
    convolution kernel (4-D) has no place in its layout."""
    from transformers import ViTConfig, ViTForImageClassification

    fields = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    model = ViTForImageClassification(ViTConfig(**fields, image_size=8, patch_size=4))
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.5)
    kernel = r"'vit.embeddings.patch_embeddings.projection.weight' \(shape \(32, 3, 4, 4\)\)"
    with pytest.raises(ExportError, match=kernel + " is pruned, but format"):
        gp.export_model(model, tmp_path / "out", format=FORMAT)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_run_of_a_model_that_is_not_a_transformers_model(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", str(run_dir), "--format", FORMAT, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err, err
    problem = _stack_problem()
    assert (problem or "needs a Hugging Face transformers PreTrainedModel, but model 'mlp' is a") in err


@needs_stack
def test_refuses_an_output_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    with pytest.raises(ExportError, match="is not empty"):
        gp.export_model(sparse_llama(), tmp_path / "out", format=FORMAT)


@needs_stack
def test_refuses_an_unreadable_trainer_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoint-4"
    folder.mkdir(parents=True)
    llama(seed=0).save_pretrained(folder)
    (folder / "growprune_sparsifier.pt").write_bytes(b"truncated")
    with pytest.raises(ExportError, match=r"growprune_sparsifier.pt: unreadable \("):
        gp.export_model(tmp_path / "run", tmp_path / "out", format=FORMAT)
    assert not (tmp_path / "out").exists()


@needs_stack
def test_an_lm_task_run_exports_and_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: ``growprune train lm/cgap-quick`` (a smoke run of the lm task's Llama) then
    ``growprune export RUN --format compressed-tensors``; transformers loads the directory with the
    masked weights the run saved and gives the same logits as the checkpoint's model."""
    pytest.importorskip("tokenizers")
    from growprune.tasks.lm.model import build_llama

    run, out = tmp_path / "run", tmp_path / "out"
    assert main(["train", "lm/cgap-quick", "--smoke", "--no-progress", "--out", str(run)]) == 0
    assert main(["export", str(run), "--format", FORMAT, "--out", str(out)]) == 0, capsys.readouterr().err
    payload = torch.load(run / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    spec, state = payload["model_spec"], payload["model"]
    assert spec["name"] == "llama"
    masks = {key.removesuffix("_mask"): mask for key, mask in state.items() if key.endswith("_mask")}
    assert masks, "the run pruned nothing"
    reference = build_llama(**spec["args"]).eval()
    reference.load_state_dict(
        {
            key: value * masks[key] if key in masks else value
            for key, value in state.items()
            if key not in {f"{k}_mask" for k in masks}
        },
        strict=False,
    )
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["sparsity_config"]["format"] == "sparse-bitmask"
    loaded = load_back(out)
    ids = torch.randint(1, spec["args"]["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, reference(input_ids=ids).logits)
    for key, mask in masks.items():
        assert not loaded.state_dict()[key][~mask.bool()].any(), key
