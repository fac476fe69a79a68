"""Export -> load is exact for both formats and every dtype, and the sparse file is small."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import growprune as gp
from growprune.export import export_model, load, read_metadata
from growprune.export.codec import DTYPES, decode_sparse, encode_sparse
from tests.export.conftest import HIDDEN, plain_state, pruned_mlp


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_round_trip_is_exact(
    run_dir: Path, mlp: torch.nn.Module, tmp_path: Path, fmt: str, dtype: str
) -> None:
    out = tmp_path / f"m-{fmt}-{dtype}.safetensors"
    summary = export_model(run_dir, out, format=fmt, dtype=dtype)
    assert summary.format == fmt and summary.pruned_layers == 3
    loaded = load(out)
    expected = plain_state(mlp)
    state = loaded.state_dict()
    assert set(state) == set(expected)  # a plain model: no mask buffers
    for key, value in expected.items():
        want = value.to(DTYPES[dtype]) if value.is_floating_point() else value
        assert state[key].dtype == want.dtype, key
        assert torch.equal(state[key], want), key
    assert not loaded.training


def test_load_can_cast_and_the_cast_is_exact(run_dir: Path, mlp: torch.nn.Module, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    export_model(run_dir, out, dtype="bf16")
    loaded = load(out, dtype=torch.float32)
    weight = mlp.features[1].weight.detach()
    assert loaded.features[1].weight.dtype == torch.float32
    assert torch.equal(loaded.features[1].weight, weight.to(torch.bfloat16).float())


def test_sparse_file_is_at_most_015_of_dense_at_90_percent(run_dir: Path, tmp_path: Path) -> None:
    sparse, dense = tmp_path / "s.safetensors", tmp_path / "d.safetensors"
    export_model(run_dir, sparse, format="sparse", dtype="fp32")
    export_model(run_dir, dense, format="dense", dtype="fp32")
    ratio = sparse.stat().st_size / dense.stat().st_size
    assert ratio <= 0.15, ratio


def test_metadata_records_builder_recipe_sparsity_and_version(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    export_model(run_dir, out)
    meta = read_metadata(out)
    assert meta["model"] == {"name": "mlp", "args": {"in_features": 784, "num_classes": 10, "hidden": HIDDEN}}
    assert meta["recipe"]["model"]["name"] == "mlp"
    assert meta["version"] == gp.__version__ and meta["format"] == "sparse" and meta["dtype"] == "fp32"
    layers = meta["sparsity"]["layers"]
    assert set(layers) == {"features.1.weight", "features.3.weight", "classifier.weight"}
    assert all(abs(v["sparsity"] - 0.9) < 0.01 for v in layers.values())
    assert meta["source"]["step"] == 7


def test_run_dir_prefers_final_then_best(tmp_path: Path) -> None:
    from tests.export.conftest import write_run

    run = tmp_path / "run"
    best, final = pruned_mlp(seed=1), pruned_mlp(seed=2)
    write_run(run, best, {"name": "mlp", "args": {"hidden": HIDDEN}}, name="best")
    out = tmp_path / "m.safetensors"
    export_model(run, out)
    assert torch.equal(load(out).classifier.weight, best.classifier.weight)
    write_run(run, final, {"name": "mlp", "args": {"hidden": HIDDEN}}, name="final")
    export_model(run, out)
    assert torch.equal(load(out).classifier.weight, final.classifier.weight)


def test_live_model_with_builder_name(tmp_path: Path) -> None:
    model = pruned_mlp(hidden=[32, 16])
    out = tmp_path / "m.safetensors"
    export_model(model, out, model_name="mlp", model_args={"hidden": [32, 16]})
    loaded = load(out)
    for key, value in plain_state(model).items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_live_model_without_builder_loads_into_a_supplied_module(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.5)
    out = tmp_path / "m.safetensors"
    export_model(model, out)
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    loaded = load(out, model=fresh)
    assert loaded is fresh
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_supplied_model_with_masks_gets_them_from_the_file(
    run_dir: Path, mlp: torch.nn.Module, tmp_path: Path
) -> None:
    out = tmp_path / "m.safetensors"
    export_model(run_dir, out)
    target = pruned_mlp(seed=5)  # other weights and masks, same architecture
    load(out, model=target)
    assert torch.equal(target.features[1].weight_mask, mlp.features[1].weight_mask)
    assert torch.equal(target.features[1].weight, mlp.features[1].weight)


def test_mask_kept_zero_weights_and_negative_zero_survive() -> None:
    weight = torch.tensor([[0.0, -0.0, 1.5], [2.0, 0.0, -3.0]])
    mask = torch.tensor([[True, False, True], [True, False, True]])  # a kept weight that is exactly 0
    packed, values = encode_sparse(weight, mask, torch.float32)
    assert values.tolist() == [0.0, 1.5, 2.0, -3.0]
    decoded, flat_mask = decode_sparse(packed, values, (2, 3))
    assert torch.equal(decoded, weight) and torch.equal(flat_mask.reshape(2, 3), mask)


def test_cli_export_and_load(
    run_dir: Path, mlp: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from growprune.cli import main

    out = tmp_path / "cli.safetensors"
    assert main(["export", str(run_dir), "--out", str(out), "--dtype", "fp16"]) == 0
    printed = capsys.readouterr().out
    # The summary reports the file's real size and the model's sparsity, both computed here
    # independently of the exporter (the size from the file system, the sparsity by counting).
    assert f"{out.stat().st_size / 1e6:.3f} MB" in printed, printed
    weights = [m.weight for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert f"sparsity {zeros:.4f}" in printed, printed
    loaded = gp.load(out)
    assert torch.equal(loaded.classifier.weight, mlp.classifier.weight.detach().half())
