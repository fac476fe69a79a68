"""What the benchmark tests share: running a benchmark script as users do, a quality row, and a
model pruned by the rigl-torch peer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(
    module: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.<module> ARGS`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def quality_row(
    method: str,
    sparsity: float,
    top1: float,
    *,
    epochs: float = 6.0,
    variant: str = "",
    seed: int = 0,
    layers: str | None = None,
) -> dict[str, Any]:
    """A quick-tier row of ``results/quality.jsonl`` as make_results reads it (``layers`` None:
    a row from before the layer conventions, which has no such field)."""
    row = {
        "tier": "quick",
        "model": "small_cnn(width=12)",
        "method": method,
        "sparsity": sparsity,
        "distribution": "dense" if method == "dense" else "uniform",
        "seed": seed,
        "epochs": epochs,
        "top1": top1,
        "final_sparsity": sparsity,
        "train_seconds": 1.0,
        "device": "cpu",
        "commit": "abcdef1234567",
        "variant": variant,
    }
    return row if layers is None else {**row, "layers": layers}


def rigl_torch_layers(first_layer_dense: bool = False) -> tuple[Any, list[Any]]:
    """(rigl-torch's scheduler, the Conv/Linear layers) of a width-4 SmallCNN pruned to 80% by
    it; skips the test where the `bench` extra is not installed."""
    if importlib.util.find_spec("rigl_torch") is None:
        pytest.skip("rigl-torch (the `bench` extra) is not installed")
    import torch

    from benchmarks.quality import make_rigl_torch_scheduler
    from growprune.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = make_rigl_torch_scheduler(
        model, optimizer, 0.8, total_steps=1000, first_layer_dense=first_layer_dense
    )
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    return pruner, layers
