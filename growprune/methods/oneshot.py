"""One-shot magnitude pruning at a chosen step, then fine-tuning with fixed masks."""

from __future__ import annotations

from typing import Any

from growprune.methods.base import Phase, Sparsifier
from growprune.methods.settings import AtLeast, Fixed, OfBudget, Part, StepArgument
from growprune.records import PhaseName


class OneShot(Sparsifier):
    """Prune every target to its sparsity by magnitude once, at `prune_step` (0 = right away:
    prune the starting weights and fine-tune for the whole run)."""

    method = "oneshot"
    title = "one-shot magnitude"
    prune_step = StepArgument(Fixed(0), epochs="prune_epoch", within_run=True)
    # Han et al. 2015: train dense, prune once by magnitude, retrain; the prune at a third of the run
    paper_schedule = {"prune_epoch": OfBudget(per=3)}
    # dense for a quarter of the run, then the prune and sparse steps
    short_run = {"prune_step": AtLeast(1, Part(4))}

    def __init__(self, model, optimizer, *, prune_step: int = 0, **kwargs: Any) -> None:  # type: ignore[no-untyped-def]
        self.prune_step = prune_step
        super().__init__(model, optimizer, **kwargs)

    def on_start(self) -> None:
        if self.prune_step == 0:
            self._prune()

    def on_step(self, step: int) -> None:
        if step == self.prune_step:
            self._prune()

    def _prune(self) -> None:
        masks = self.compute_masks(self.names, self.magnitude_scores(self.names))
        self.change_masks(masks, "prune")

    def describe_phase(self, step: int) -> Phase:
        return Phase(PhaseName.DENSE if step < self.prune_step else PhaseName.FINETUNE, step)
