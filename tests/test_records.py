"""Typed records: what code asks of a phase is a property of the phase, not a compared string."""

from __future__ import annotations

import torch

import growprune as gp
from growprune.records import Phase, PhaseName

NAMES = {v for k, v in vars(PhaseName).items() if k.isupper() and isinstance(v, str)}


def test_masks_are_final_in_finetune_and_done_only() -> None:
    assert {n for n in NAMES if Phase(n, 0).masks_final} == {PhaseName.FINETUNE, PhaseName.DONE}
    assert {n for n in NAMES if Phase(n, 0).ended} == {PhaseName.DONE}
    assert not Phase("a third-party method's phase", 0).masks_final


def test_every_method_names_its_phases_from_phase_name() -> None:
    """Each built-in schedule, walked step by step, only states phases PhaseName declares, and
    ``done`` agrees with the phase's ``masks_final`` (the dense baseline is always done)."""
    schedules = {
        "oneshot": {"prune_step": 3},
        "gmp": {"start_step": 2, "end_step": 6, "frequency": 2},
        "set": {"end_step": 6, "update_interval": 2},
        "rigl": {"end_step": 6, "update_interval": 2},
        "admm": {"pretrain_steps": 1, "admm_steps": 4, "update_interval": 2},
        "cgap": {"partitions": 2, "steps_per_phase": 2, "rounds": 1, "finetune_steps": 2},
        "dense": {},
    }
    for method, schedule in schedules.items():
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        kwargs = {} if method == "dense" else {"sparsity": 0.5}
        sparsifier = gp.get_method(method)(model, optimizer, seed=0, **kwargs, **schedule)
        for step in range(12):
            phase = sparsifier.describe_phase(step)
            assert phase.name in NAMES, f"{method} at step {step}: {phase.name!r}"
        # dense makes no mask change at all: done from the start, in its one phase
        assert sparsifier.done == (method == "dense" or sparsifier.phase.masks_final)
