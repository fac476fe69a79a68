"""SET and RigL: drop by magnitude, regrow at random (SET) or by dense gradient (RigL)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import make_optimizer, params_by_name, snapshot_masks


def run_with_probes(sparsifier: gp.SET, model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int):
    """Train while recording, for every update step, the masks, weights and dense grads before it."""
    records = []
    for step, (x, y) in enumerate(zoo.batches("mlp", steps), start=1):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in params_by_name(sparsifier).items()}
        masks = snapshot_masks(sparsifier)
        optimizer.step()
        weights = {n: p.detach().clone() for n, p in params_by_name(sparsifier).items()}
        sparsifier.step()
        if sparsifier.is_update_step(step):
            records.append((step, masks, weights, grads, snapshot_masks(sparsifier)))
    return records


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.parametrize("decay", ["cosine", "constant"])
def test_drop_by_magnitude_and_grow(method: str, decay: str) -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    cls = gp.RigL if method == "rigl" else gp.SET
    sparsifier = cls(
        model, optimizer, sparsity=0.8, end_step=20, update_interval=5, drop_fraction=0.4, decay=decay
    )
    records = run_with_probes(sparsifier, model, optimizer, 24)
    assert [r[0] for r in records] == [5, 10, 15]
    for step, before, weights, grads, after in records:
        expected_fraction = 0.4 if decay == "constant" else 0.2 * (1 + math.cos(math.pi * step / 20))
        assert sparsifier.fraction_at(step) == pytest.approx(expected_fraction)
        for name in sparsifier.names:
            kept = int(before[name].sum())
            assert int(after[name].sum()) == kept == sparsifier.keep_counts[name]
            moved = round(expected_fraction * kept)
            # survivors: the kept - moved largest magnitudes among the kept weights (ties: lowest index)
            magnitude = weights[name].abs().reshape(-1)
            kept_idx = before[name].reshape(-1).nonzero().squeeze(1)
            order = torch.sort(-magnitude[kept_idx], stable=True).indices
            survivors = torch.zeros_like(before[name].reshape(-1))
            survivors[kept_idx[order[: kept - moved]]] = True
            survivors = survivors.view_as(before[name])
            assert (after[name] & survivors).sum() == survivors.sum(), "a large weight was dropped"
            dropped = before[name] & ~after[name]
            grown = after[name] & ~before[name]
            assert int(dropped.sum()) == int(grown.sum()) <= moved
            assert int((after[name] & ~survivors).sum()) == moved
            # (a weight dropped and regrown in the same update keeps its value, as RigL's
            # reinit_when_same=False; newly grown weights start at 0: see test_invariants)
            if method == "rigl":
                chosen = after[name] & ~survivors
                others = ~survivors & ~chosen
                assert grads[name].abs()[chosen].min() >= grads[name].abs()[others].max()


def test_no_updates_after_end_step() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.SET(model, optimizer, sparsity=0.8, end_step=10, update_interval=5)
    records = run_with_probes(sparsifier, model, optimizer, 30)
    assert [r[0] for r in records] == [5]
    assert sparsifier.phase.name == "finetune" and sparsifier.done


def test_set_grows_differently_from_rigl() -> None:
    masks = {}
    for cls in (gp.SET, gp.RigL):
        model = zoo.build("mlp")
        optimizer = make_optimizer("sgd", model)
        sparsifier = cls(model, optimizer, sparsity=0.8, end_step=20, update_interval=5, seed=0)
        run_with_probes(sparsifier, model, optimizer, 6)
        masks[cls.method] = sparsifier.masks
    assert any(not torch.equal(masks["set"][n], masks["rigl"][n]) for n in masks["set"])


def test_rigl_needs_optimizer_step_before_sparsifier_step() -> None:
    model = zoo.build("mlp")
    sparsifier = gp.RigL(model, make_optimizer("sgd", model), sparsity=0.8, end_step=20, update_interval=1)
    with pytest.raises(RuntimeError, match=r"optimizer\.step\(\) before"):
        sparsifier.step()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop_fraction": 0.0}, r"drop_fraction must be in \(0, 1\]"),
        ({"drop_fraction": 1.5}, r"drop_fraction must be in \(0, 1\]"),
        ({"decay": "linear"}, "decay must be one of cosine, constant"),
        ({"end_step": 0}, "end_step must be an integer >= 1"),
        ({"update_interval": 0}, "update_interval must be an integer >= 1"),
        ({"pattern": "2:4", "sparsity": 0.5}, "does not support N:M"),
    ],
)
@pytest.mark.parametrize("cls", [gp.SET, gp.RigL])
def test_bad_arguments(cls: type[gp.SET], kwargs: dict, message: str) -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match=message):
        cls(model, make_optimizer("sgd", model), **{"sparsity": 0.8, "end_step": 10, **kwargs})


def test_rigl_survives_a_step_skipped_by_grad_scaler() -> None:
    """With AMP, GradScaler skips optimizer.step() on inf/nan gradients; the user's loop still calls
    sparsifier.step(). An update that lands on such a step is skipped: there is no gradient to
    grow by."""
    model = zoo.build("mlp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rigl = gp.RigL(model, optimizer, sparsity=0.8, end_step=20, update_interval=4)
    scaler = torch.amp.GradScaler("cpu")
    for step, (x, y) in enumerate(zoo.batches("mlp", 6), start=1):
        loss = F.cross_entropy(model(x), y) * (float("inf") if step == 4 else 1.0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        rigl.step()
    assert rigl.step_count == 6
    assert [h["event"] for h in rigl.history] == ["init"]  # the update at step 4 was skipped
