"""Export is sparse from the attached sparsifier's masks whether or not they are persistent
buffers (``persistent_masks=False`` is what the Trainer and Lightning callbacks use), and a model
without a sparsifier is refused for sparse export with a message saying so.

Table-driven: each row is a model and a method; every row runs with persistent and non-persistent
masks, and the file must read back with exactly the sparsifier's masks and zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.export import ExportError, export_model, load
from growprune.export.reader import read_export


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def convnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(4))


def tied() -> nn.Module:
    """Two modules sharing one weight: the mask must come out under both keys of the state dict."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    model[2].weight = model[0].weight
    return model


def gpt2() -> nn.Module:
    pytest.importorskip("transformers")
    from tests.tiny_transformers import gpt2 as build

    return build(seed=0)


@dataclass
class Row:
    id: str
    build: Callable[[], nn.Module]
    method: type[gp.Sparsifier]
    kwargs: dict[str, Any]


ROWS = [
    Row("mlp-oneshot", mlp, gp.OneShot, {"sparsity": 0.75}),
    Row("mlp-cgap", mlp, gp.CGaP, {"sparsity": 0.5, "partitions": 2, "steps_per_phase": 2}),
    Row("conv-gmp", convnet, gp.GMP, {"sparsity": 0.6, "start_step": 0, "end_step": 1, "frequency": 1}),
    Row("tied-oneshot", tied, gp.OneShot, {"sparsity": 0.5}),
    Row("gpt2-oneshot", gpt2, gp.OneShot, {"sparsity": 0.5, "pattern": "unstructured"}),
]


@pytest.mark.parametrize("persistent", [False, True], ids=["non-persistent", "persistent"])
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_export_is_sparse_from_the_sparsifier_masks(row: Row, persistent: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = row.build()
    if row.build is convnet:
        model(torch.randn(1, 3, 8, 8))  # materialise the lazy layer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    sparsifier = row.method(model, optimizer, persistent_masks=persistent, **row.kwargs)
    assert any(k.endswith("_mask") for k in model.state_dict()) == persistent
    summary = export_model(model, tmp_path / "m.safetensors")
    assert summary.format == "sparse" and summary.pruned_layers >= len(sparsifier.masks)
    exported = read_export(tmp_path / "m.safetensors")
    for name, mask in sparsifier.masks.items():
        assert torch.equal(exported.masks[name], mask), name
        assert torch.count_nonzero(exported.state[name][~mask]) == 0, name
    fresh = row.build()
    if row.build is convnet:
        fresh(torch.randn(1, 3, 8, 8))
    loaded = load(tmp_path / "m.safetensors", model=fresh)
    weights = {k: v for k, v in model.state_dict().items() if not k.endswith("_mask")}
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.parametrize("persistent", [False, True], ids=["non-persistent", "persistent"])
@pytest.mark.parametrize("row", ROWS[:2], ids=lambda r: r.id)
def test_removed_sparsifier_means_no_masks(row: Row, persistent: bool, tmp_path: Path) -> None:
    model = row.build()
    sparsifier = row.method(
        model, torch.optim.SGD(model.parameters(), lr=0.01), persistent_masks=persistent, **row.kwargs
    )
    sparsifier.remove()
    with pytest.raises(ExportError, match=r"no sparsifier is attached, or it was removed.*format='dense'"):
        export_model(model, tmp_path / "m.safetensors")
    assert export_model(model, tmp_path / "d.safetensors", format="dense").format == "dense"
