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


def test_sparsifier_step_alone_never_advances_the_schedule() -> None:
    """The optimizer drives the schedule: calling sparsifier.step() without an optimizer step (or
    twice per step) must not count a step that did not happen."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.RigL(model, optimizer, sparsity=0.8, end_step=20, update_interval=1)
    for _ in range(3):
        sparsifier.step()
    assert sparsifier.step_count == 0 and [h.event for h in sparsifier.history] == ["init"]


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
    sparsifier.step(). The skipped step is not counted, so the update of counted step 4 happens one
    iteration later, on real gradients, and the masks do not move on the skipped iteration."""
    model = zoo.build("mlp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rigl = gp.RigL(model, optimizer, sparsity=0.8, end_step=20, update_interval=4)
    scaler = torch.amp.GradScaler("cpu")
    counted = []
    for step, (x, y) in enumerate(zoo.batches("mlp", 6), start=1):
        before = {n: m.clone() for n, m in rigl.masks.items()}
        loss = F.cross_entropy(model(x), y) * (float("inf") if step == 4 else 1.0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        rigl.step()
        counted.append(rigl.step_count)
        if step == 4:
            assert all(torch.equal(before[n], m) for n, m in rigl.masks.items())
        if step == 5:  # counted step 4: the drop-grow happens now, on real gradients
            assert not all(torch.equal(before[n], m) for n, m in rigl.masks.items())
            assert all(int(m.sum()) == int(before[n].sum()) for n, m in rigl.masks.items())
    assert counted == [1, 2, 3, 3, 4, 5]
    assert [(h.event, h.step) for h in rigl.history] == [("init", 0), ("drop-grow", 4)]
    for t in rigl.targets:
        assert (t.param.detach()[~rigl.masks[t.name]] == 0).all()
