"""Epochs to steps (recipe section -> built sparsifier) and the learning-rate curve."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from growprune.integrations.schedule import schedule_kwargs
from growprune.methods import get_method
from growprune.methods.settings import RunLength
from growprune.train.recipe import sparsifier_arguments, validate_recipe
from growprune.train.schedule import build_lr_schedule


def recipe(method: dict, schedule: dict | None = None, epochs: float | None = None):
    data = {"method": method, "schedule": schedule or {}, "optimizer": {"lr": 0.1}}
    if epochs is not None:
        data["training"] = {"epochs": epochs}
    return validate_recipe(data)


def built(r, steps_per_epoch: int, total: int | None = None):
    """The recipe's sparsifier on a 4-layer MLP, as the trainer builds it."""
    model = nn.Sequential(*(nn.Linear(8, 8) for _ in range(4)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = sparsifier_arguments(r.method, RunLength(steps_per_epoch, total), seed=0)
    return get_method(r.method.name)(model, optimizer, **kwargs)


def schedule_of(r, steps_per_epoch: int, total: int | None = None):
    sparsifier = built(r, steps_per_epoch, total) if r.method.name != "dense" else None
    length = total or sparsifier.total_steps
    starts = sparsifier.phase_starts() if sparsifier is not None else None
    return build_lr_schedule(r.schedule, r.optimizer.lr, steps_per_epoch, length, starts)


def test_gap_total_is_sum_of_rounded_phases() -> None:
    r = recipe(
        {"name": "cgap", "partitions": 3, "epochs_per_phase": 0.5, "rounds": 2, "finetune_epochs": 1.5}
    )
    assert r.training.epochs == pytest.approx(4.5)
    kwargs = sparsifier_arguments(r.method, RunLength(7), seed=0)
    assert kwargs["steps_per_phase"] == 4  # round(3.5) -> 4 (banker's rounding gives 4)
    assert built(r, 7).total_steps == 6 * 4 + round(1.5 * 7)


def test_set_end_defaults_to_three_quarters_of_training() -> None:
    r = recipe({"name": "rigl", "sparsity": 0.9}, epochs=8)
    kwargs = sparsifier_arguments(r.method, RunLength(10, 80), seed=3)
    assert kwargs["end_step"] == 60 and kwargs["seed"] == 3 and kwargs["update_interval"] == 1
    kwargs = sparsifier_arguments(r.method, RunLength(469, 8 * 469), seed=3)
    assert (kwargs["end_step"], kwargs["update_interval"]) == (2814, 37)  # every 1% of the run


@pytest.mark.parametrize("method", ["oneshot", "gmp", "set", "rigl", "admm"])
@pytest.mark.parametrize("steps_per_epoch", [1, 10, 469])
def test_a_recipe_leaving_out_its_schedule_gets_the_callbacks_defaults(
    method: str, steps_per_epoch: int
) -> None:
    """One declaration, one default: a recipe without the method's schedule keys builds what a
    framework callback builds for a run of the same length (growprune.integrations)."""
    r = recipe({"name": method, "sparsity": 0.9}, epochs=8)
    total = 8 * steps_per_epoch
    kwargs = sparsifier_arguments(r.method, RunLength(steps_per_epoch, total), seed=0)
    callbacks = schedule_kwargs(method, {}, total)
    assert callbacks and {name: kwargs[name] for name in callbacks} == callbacks


def test_global_cosine_with_warmup() -> None:
    r = recipe({"name": "dense"}, {"name": "cosine", "warmup_epochs": 1}, epochs=10)
    lr = schedule_of(r, steps_per_epoch=10, total=100)
    assert lr.lr(0) == pytest.approx(0.1 / 11)
    assert lr.lr(9) == pytest.approx(0.1 * 10 / 11)
    assert lr.lr(10) == pytest.approx(0.1)
    assert lr.lr(55) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr.lr(99) < 0.001


def test_restart_per_gap_step() -> None:
    r = recipe(
        {"name": "cgap", "partitions": 2, "epochs_per_phase": 1, "rounds": 1, "finetune_epochs": 2},
        {"name": "cosine", "warmup_epochs": 0, "restart_per_phase": True},
    )
    lr = schedule_of(r, steps_per_epoch=10)
    assert lr.segments == ((0, 10), (10, 20), (20, 40))
    assert lr.lr(0) == lr.lr(10) == lr.lr(20) == pytest.approx(0.1)
    assert lr.lr(9) < 0.01 and lr.lr(39) < 0.01


def test_restart_per_phase_needs_gap() -> None:
    r = recipe({"name": "gmp", "end_epoch": 2}, {"restart_per_phase": True}, epochs=4)
    with pytest.raises(ValueError, match="restart_per_phase"):
        schedule_of(r, 10, 40)
