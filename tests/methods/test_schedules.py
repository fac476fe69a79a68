"""The schedules of a chosen shape a method declares (docs/methods.md, "Schedules of a chosen shape"):
its published schedule scaled to a budget (`paper_schedule` / `paper_settings`), a short run with
each kind of its events (`short_run` / `short_schedule`) and its steady sparse phase
(`steady_schedule`), each with a default derived from the step-argument declarations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.methods import METHODS
from growprune.methods.settings import AtLeast, EverySteps, OfBudget, Part, Rest
from tests.methods.midway import midway_method

NEVER = 10**9


Midway = midway_method("midway_schedules_test")  # declares nothing but its step argument (not registered)


def test_a_method_that_declares_none_gets_its_declared_defaults() -> None:
    assert Midway.paper_settings(6, 100) == {}  # a recipe then takes the declared defaults for the run
    assert Midway.short_schedule(16) == {"prune_step": 8}  # Share(0.5) of 16 steps
    assert Midway.short_schedule(1) == {"prune_step": 1}  # the declared minimum
    assert Midway.steady_schedule(0.8, NEVER) == {"prune_step": NEVER}
    assert gp.Dense.paper_settings(6, 100) == gp.Dense.short_schedule(16) == {}
    assert gp.Dense.steady_schedule(0.0, NEVER) == {}


def test_budget_values_resolve_in_declaration_order() -> None:
    # C-GaP: 2 rounds x K phases = 2/3 of the budget, fine-tuning 1/3 (the bundled 4 x 2 x 2 + 8 of 24)
    section = gp.CGaP.paper_settings(24, 100)
    assert section["epochs_per_phase"] == 2.0 and section["finetune_epochs"] == 8.0
    assert gp.CGaP.paper_settings(24, 100, partitions=3)["epochs_per_phase"] == 24 / 9
    assert gp.CGaP.paper_settings(24, 100, partitions=None)["partitions"] == 4
    assert "partitions" not in gp.GMP.paper_settings(24, 100, partitions=3)  # not its key: ignored
    # SET/RigL: an update every 100 steps, or 4 before end_epoch where the run is shorter
    assert gp.RigL.paper_settings(6, 468)["update_every_epochs"] == 100 / 468
    assert gp.SET.paper_settings(2, 8) == {
        "end_epoch": 1.5,
        "update_every_epochs": 3 / 8,  # int(1.5 x 8) // 4 steps
        "drop_fraction": 0.3,
        "decay": "cosine",
    }
    assert OfBudget(2, per=3).resolve(6, 1, {}) == 4.0
    assert EverySteps(10, updates=2, until="end").resolve(9, 5, {"end": 3.0}) == 7 / 5


def test_defaults_of_a_short_run() -> None:
    assert AtLeast(2, Rest(AtLeast(1, Part(4)))).steps(16, {}) == 12
    assert AtLeast(2, Rest(AtLeast(1, Part(4)))).steps(2, {}) == 2
    assert str(AtLeast(1, Part(4))) == "max(1, T // 4)" and str(Rest(Part(4))) == "T - T // 4"


def test_gap_short_schedule_fills_the_run_with_its_phases() -> None:
    assert gp.CGaP.short_schedule(16) == {
        "partitions": 4,
        "rounds": 1,
        "steps_per_phase": 3,
        "finetune_steps": 4,
    }
    assert gp.PGaP.short_schedule(16) == {
        "partitions": 4,
        "rounds": 2,
        "worker": 0,
        "steps_per_phase": 6,
        "finetune_steps": 4,
    }
    # too short for the phases: one step each, no fine-tuning (a measured loop may end inside)
    assert gp.CGaP.short_schedule(3) == {
        "partitions": 4,
        "rounds": 1,
        "steps_per_phase": 1,
        "finetune_steps": 0,
    }


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_from_its_schedules(name: str) -> None:
    """Each registered method accepts its own short and steady schedules, and its paper schedule
    is made of its recipe keys."""
    import dataclasses

    cls = METHODS[name]
    keys = {f.name for f in dataclasses.fields(cls.settings)}
    assert set(cls.paper_schedule) <= keys
    fixed = {f.name: f.default for f in dataclasses.fields(cls.settings)}
    sparsity = 0.0 if fixed.get("sparsity") == 0.0 else 0.5  # a method that prunes nothing: 0
    for kwargs in (cls.short_schedule(8), cls.steady_schedule(sparsity, NEVER)):
        model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        if cls.loop == "rounds":
            kwargs["merger"] = lambda sparsifier: None
        cls(model, optimizer, sparsity=sparsity, seed=0, **kwargs).remove()
