"""Typed records: what code asks of a phase is a property of the phase, not a compared string."""

from __future__ import annotations

from growprune.records import Phase, PhaseName
from tests.methods import zoo
from tests.methods.harness import STEPS, VARIANTS, make_optimizer, make_sparsifier

NAMES = {v for k, v in vars(PhaseName).items() if k.isupper() and isinstance(v, str)}


def test_masks_are_final_in_finetune_and_done_only() -> None:
    assert {n for n in NAMES if Phase(n, 0).masks_final} == {PhaseName.FINETUNE, PhaseName.DONE}
    assert {n for n in NAMES if Phase(n, 0).ended} == {PhaseName.DONE}
    assert not Phase("a third-party method's phase", 0).masks_final


def test_every_method_names_its_phases_from_phase_name() -> None:
    """Each built-in schedule, walked step by step, only states phases PhaseName declares, and
    ``done`` agrees with the phase's ``masks_final`` (the dense baseline is always done)."""
    for variant in VARIANTS:
        model = zoo.build("mlp")
        sparsifier = make_sparsifier(variant, model, make_optimizer("sgd", model))
        method = sparsifier.method
        for step in range(STEPS + 2):
            phase = sparsifier.describe_phase(step)
            assert phase.name in NAMES, f"{variant} at step {step}: {phase.name!r}"
        # dense makes no mask change at all: done from the start, in its one phase
        assert sparsifier.done == (method == "dense" or sparsifier.phase.masks_final)
