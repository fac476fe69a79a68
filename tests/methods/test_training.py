"""A short real training: C-GaP at 80% matches dense accuracy; every baseline reaches its sparsity.

The problem is seeded and synthetic: 10 Gaussian clusters in 24 dimensions, half of the
coordinates passed through sin(3x) so that a linear model is not enough. The separation is set
so that the dense MLP lands around 80% test accuracy: far from both chance and 100%, so that a
sparse model that trains badly shows up as a gap.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import growprune as gp

# Accuracy bands after real training: they depend on the CPU kernels' round-off.
pytestmark = pytest.mark.trajectory

DIM, CLASSES, STEPS, BATCH = 24, 10, 600, 64
SPARSITY = 0.8


def problem(seed: int = 0, n_train: int = 3000, n_test: int = 2000) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, DIM, generator=gen) * 0.6 / DIM**0.5
    y = torch.randint(0, CLASSES, (n_train + n_test,), generator=gen)
    x = centers[y] + torch.randn(n_train + n_test, DIM, generator=gen) / DIM**0.5
    x = torch.cat([x[:, : DIM // 2], torch.sin(3 * x[:, DIM // 2 :])], dim=1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(DIM, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, CLASSES)
    )


def train_and_test(method: str, **kwargs: Any) -> tuple[float, nn.Module, gp.Sparsifier]:
    """Test accuracy (%) after STEPS steps, the model and its sparsifier (whose ``start_masks``
    attribute holds the masks it started from)."""
    x_train, y_train, x_test, y_test = problem()
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    sparsifier = gp.get_method(method)(model, optimizer, seed=0, **kwargs)
    sparsifier.start_masks = {n: m.clone() for n, m in sparsifier.masks.items()}  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        idx = torch.randint(0, len(x_train), (BATCH,), generator=gen)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return 100.0 * accuracy, model, sparsifier


@pytest.fixture(scope="module")
def dense_accuracy() -> float:
    accuracy, _, _ = train_and_test("dense")
    assert 65.0 < accuracy < 97.0, "the synthetic problem no longer discriminates; retune it"
    return accuracy


def check_final_sparsity(model: nn.Module, sparsifier: gp.Sparsifier) -> None:
    total = sum(sparsifier.numels.values())
    mask_zeros = sum(int((~m).sum()) for m in sparsifier.masks.values())
    assert abs(mask_zeros - SPARSITY * total) <= 0.5  # masks: the request, to the element
    report = gp.sparsity_report(model)
    assert [layer.name for layer in report.layers] == sparsifier.names
    # weights: at least the mask zeros (a kept weight may be exactly 0 too)
    assert report.zeros >= mask_zeros and report.overall >= SPARSITY - 0.5 / total
    assert report.overall == pytest.approx(SPARSITY, abs=1e-3)


def test_cgap_matches_dense(dense_accuracy: float) -> None:
    accuracy, model, cgap = train_and_test(
        "cgap", sparsity=SPARSITY, partitions=3, steps_per_phase=60, rounds=2, finetune_steps=STEPS - 360
    )
    assert cgap.total_steps == STEPS and cgap.phase.name == "done"
    check_final_sparsity(model, cgap)
    print(f"dense {dense_accuracy:.2f}%, C-GaP {accuracy:.2f}%")
    assert accuracy >= dense_accuracy - 2.0, f"C-GaP {accuracy:.2f}% vs dense {dense_accuracy:.2f}%"


BASELINES: dict[str, dict[str, Any]] = {
    "oneshot": {"prune_step": 100},
    "gmp": {"start_step": 50, "end_step": 350, "frequency": 25},
    "set": {"end_step": 450, "update_interval": 50},
    "rigl": {"end_step": 450, "update_interval": 50},
    "admm": {"pretrain_steps": 100, "admm_steps": 250, "update_interval": 50},
}


@pytest.mark.parametrize("method", list(BASELINES))
def test_baseline_reaches_its_sparsity_and_learns(method: str, dense_accuracy: float) -> None:
    accuracy, model, sparsifier = train_and_test(method, sparsity=SPARSITY, **BASELINES[method])
    assert sparsifier.done
    check_final_sparsity(model, sparsifier)
    print(f"{method} {accuracy:.2f}%")
    assert accuracy >= dense_accuracy - 10.0, f"{method} {accuracy:.2f}% vs dense {dense_accuracy:.2f}%"
    if method in ("set", "rigl"):
        # Accuracy cannot tell drop-and-grow from a fixed random mask on this problem (a fixed
        # 80% mask scored 79.85% against dense 78.20%), so check the masks moved: 8 updates of
        # drop_fraction 0.3 (decaying) replace well over a tenth of the kept weights.
        start = sparsifier.start_masks  # type: ignore[attr-defined]
        kept = sum(int(m.sum()) for m in start.values())
        moved = sum(int((start[n] & ~m).sum()) for n, m in sparsifier.masks.items())
        print(f"{method}: {moved} of {kept} kept weights were dropped for grown ones")
        assert moved >= 0.1 * kept, f"{method} moved {moved} of {kept} kept weights"
