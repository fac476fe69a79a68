"""The quality benchmark runs end to end on its smoke tier and writes well-formed rows."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.helpers import REPO, rigl_torch_layers

FIELDS = {
    "tier",
    "model",
    "method",
    "sparsity",
    "distribution",
    "seed",
    "epochs",
    "top1",
    "final_sparsity",
    "train_seconds",
    "device",
    "commit",
}


@pytest.mark.slow  # half a minute; `make test-slow` runs it
def test_quality_smoke(tmp_path: Path) -> None:
    out = tmp_path / "quality.jsonl"
    methods = ["dense", "cgap", "pgap", "rigl"]
    if importlib.util.find_spec("rigl_torch") is not None:  # the `bench` extra is installed
        methods.append("rigl-torch")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.quality",
        "--smoke",
        "--out",
        str(out),
        "--sparsities",
        "0.8",
        "--methods",
        *methods,
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == sorted(methods)
    for row in rows:
        assert set(row) >= FIELDS, FIELDS - set(row)
        assert row["tier"] == "smoke" and 0.0 <= row["top1"] <= 1.0
        assert row["epochs"] == 2  # equal compute budget, P-GaP's K workers included
        expected = 0.0 if row["method"] == "dense" else 0.8
        assert abs(row["final_sparsity"] - expected) < 0.01, row
    # a second invocation skips what is already there (append-only, resumable)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 runs to do" in again.stdout
    assert len(out.read_text().splitlines()) == len(rows)


def test_rigl_torch_prunes_the_same_layers() -> None:
    """Configured like growprune: Linear layers and the first layer are pruned too."""
    import torch

    pruner, layers = rigl_torch_layers()
    model, optimizer = pruner.model, pruner.optimizer
    assert len(pruner.W) == len(layers)

    def pruned_as_asked(layer: torch.nn.Module) -> bool:  # rigl-torch rounds down: int(0.8 * n) zeros
        zeros, n = int((layer.weight == 0).sum()), layer.weight.numel()
        return abs(zeros - int(0.8 * n)) <= 1

    assert all(pruned_as_asked(layer) for layer in layers)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert pruner()  # not an update step: the optimizer steps
    optimizer.step()
    assert all(pruned_as_asked(layer) for layer in layers)


def test_rigl_torch_updates_a_channels_last_model(tmp_path: Path) -> None:
    """rigl-torch flattens weights with .view(-1), which a channels-last weight refuses: its runs
    (in the full tier, whose recipe asks for channels-last) keep the default layout and update."""
    if importlib.util.find_spec("rigl_torch") is None:
        import pytest

        pytest.skip("rigl-torch (the `bench` extra) is not installed")
    import dataclasses

    from benchmarks.quality import TIERS, RunSpec, build_recipe_dict, run_rigl_torch

    # 5 epochs of 32 batches: 160 steps, past rigl-torch's first update at step 100
    tier = dataclasses.replace(TIERS["smoke"], channels_last=True, precision="bf16", epochs=5, batch_size=16)
    recipe = build_recipe_dict(RunSpec("smoke", "rigl-torch", 0.8, "uniform", 0), tier, 1)
    assert recipe["training"]["channels_last"] is True
    result = run_rigl_torch(recipe, tmp_path / "run", 0.8)
    assert result["rigl_updates"] >= 1 and result["channels_last"] is False
    assert abs(result["final_sparsity"] - 0.8) < 0.01
