"""Gradual magnitude pruning: the cubic ramp, monotone masks, exact final counts."""

from __future__ import annotations

import pytest
import torch

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import make_optimizer, snapshot_masks, train


def cubic(step: int, start: int, end: int, initial: float, final: float) -> float:
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


@pytest.mark.parametrize("distribution", ["uniform", "erk", "global"])
@pytest.mark.parametrize("case", ["mlp", "conv1d_depthwise", "transformer"])
def test_masks_only_shrink_and_follow_the_ramp(case: str, distribution: str) -> None:
    model = zoo.build(case)
    optimizer = make_optimizer("sgd", model)
    start, end = 2, 26
    sparsifier = gp.GMP(
        model, optimizer, sparsity=0.9, start_step=start, end_step=end, frequency=1, distribution=distribution
    )
    total = sum(sparsifier.numels.values())
    previous = snapshot_masks(sparsifier)

    def check(step: int) -> None:
        nonlocal previous
        for name, mask in sparsifier.masks.items():
            assert not (mask & ~previous[name]).any(), f"step {step}: {name} regrew a pruned weight"
        previous = snapshot_masks(sparsifier)
        zeros = total - sum(int(m.sum()) for m in sparsifier.masks.values())
        # each layer is within one element of its share, so the total is within one per layer
        assert abs(zeros - cubic(step, start, end, 0.0, 0.9) * total) < len(sparsifier.names) + 1e-6

    train(model, optimizer, sparsifier, zoo.batches(case, end + 2), check)
    assert sparsifier.done and sparsifier.phase.name == "finetune"
    assert sum(int(m.sum()) for m in sparsifier.masks.values()) == sum(sparsifier.keep_counts.values())


def test_sparsity_at_is_the_cubic() -> None:
    model = zoo.build("mlp")
    sparsifier = gp.GMP(
        model, make_optimizer("sgd", model), sparsity=0.8, initial_sparsity=0.2, start_step=10, end_step=50
    )
    for step in (0, 10, 11, 25, 49, 50, 80):
        assert sparsifier.sparsity_at(step) == pytest.approx(cubic(step, 10, 50, 0.2, 0.8))
    # initial sparsity is applied at construction when the ramp starts at 0
    model = zoo.build("mlp")
    sparsifier = gp.GMP(model, make_optimizer("sgd", model), sparsity=0.8, initial_sparsity=0.4, end_step=10)
    assert sparsifier.current_sparsity() == pytest.approx(0.4, abs=1e-3)


def test_prunes_only_on_frequency_and_end() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.GMP(model, optimizer, sparsity=0.8, start_step=3, end_step=13, frequency=4)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 16))
    # step 3 is the start of the ramp, where sparsity is still initial_sparsity = 0: nothing to prune
    assert [h.step for h in sparsifier.history] == [7, 11, 13]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end_step": 5, "start_step": 10}, "end_step must be an integer >= 10"),
        ({"end_step": 10, "frequency": 0}, "frequency must be an integer >= 1"),
        ({"end_step": 10, "initial_sparsity": 0.9}, r"initial_sparsity \(0.9\) must not exceed sparsity"),
        ({"end_step": 10, "initial_sparsity": 1.2}, r"initial_sparsity must be in \[0, 1\)"),
        ({"end_step": 10, "pattern": "2:4", "sparsity": 0.5}, "does not support N:M"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match=message):
        gp.GMP(model, make_optimizer("sgd", model), **{"sparsity": 0.8, **kwargs})


def test_weights_pruned_by_magnitude() -> None:
    model = zoo.build("mlp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # weights frozen: ranking is by initial |w|
    before = {n: p.detach().abs().clone() for n, p in model.named_parameters()}
    sparsifier = gp.GMP(model, optimizer, sparsity=0.7, start_step=0, end_step=6, frequency=2)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 6))
    for name, mask in sparsifier.masks.items():
        assert before[name][mask].min() >= before[name][~mask].max()
