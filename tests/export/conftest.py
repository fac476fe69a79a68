"""Small pruned models and growprune-style checkpoints for the export tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import growprune as gp
from growprune.export import export_model
from growprune.files import atomic_torch_save
from growprune.models import build_model
from growprune.train.checkpoint import CHECKPOINT_FORMAT

HIDDEN = [300, 100]


def pruned_mlp(sparsity: float = 0.9, hidden: list[int] | None = None, seed: int = 0) -> torch.nn.Module:
    """An MLP with a OneShot sparsifier attached (mask buffers present)."""
    torch.manual_seed(seed)
    model = build_model("mlp", in_features=784, hidden=hidden or HIDDEN, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gp.OneShot(model, optimizer, sparsity=sparsity)
    return model


def write_run(run_dir: Path, model: torch.nn.Module, model_cfg: dict[str, Any], name: str = "final") -> Path:
    """A run directory holding one checkpoint in the engine's payload format."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": gp.__version__,
        "recipe": {"name": "t", "data": {"name": "synthetic", "args": {}}, "model": model_cfg},
        "smoke": False,
        "model": model.state_dict(),
        "optimizer": {},
        "sparsifier": {},
        "position": {"step": 7, "epoch": 1, "batch": 0, "best_acc": 0.5, "elapsed": 1.0},
    }
    path = run_dir / "checkpoints" / f"{name}.pt"
    atomic_torch_save(payload, path)
    return path


@pytest.fixture
def mlp() -> torch.nn.Module:
    return pruned_mlp()


@pytest.fixture
def run_dir(tmp_path: Path, mlp: torch.nn.Module) -> Path:
    run = tmp_path / "run"
    write_run(run, mlp, {"name": "mlp", "args": {"hidden": HIDDEN}})
    return run


@pytest.fixture
def exported(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "m.safetensors"
    export_model(run_dir, out)
    return out


def plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("_mask")}


def rewrite_export(path: Path, edit: Callable[[dict[str, torch.Tensor], dict[str, str]], Any]) -> None:
    """Rewrite an export after ``edit(tensors, metadata)`` with a matching checksum, as a forger would."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from growprune.export.fileformat import digest

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
    edit(tensors, meta)
    meta["growprune.sha256"] = digest(tensors)
    save_file(tensors, str(path), metadata=meta)
