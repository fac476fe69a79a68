"""One-shot magnitude pruning at a chosen step, then fine-tuning with fixed masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from growprune.methods.base import Phase, Sparsifier, check_steps
from growprune.methods.settings import MethodSettings, RunLength, beyond_run, bounded
from growprune.records import PhaseName


@dataclass(kw_only=True)
class OneShotSettings(MethodSettings):
    prune_epoch: float = bounded(0.0, ge=0)


class OneShot(Sparsifier):
    """Prune every target to its sparsity by magnitude once, at `prune_step` (0 = right away)."""

    method = "oneshot"
    title = "one-shot magnitude"
    settings = OneShotSettings
    step_arguments = {"prune_step": 0}
    step_defaults = {"prune_step": "0 (prune the starting weights, fine-tune for the whole run)"}

    def __init__(self, model, optimizer, *, prune_step: int = 0, **kwargs: Any) -> None:  # type: ignore[no-untyped-def]
        self.prune_step = check_steps("prune_step", prune_step)
        super().__init__(model, optimizer, **kwargs)

    @classmethod
    def arguments_from(cls, settings: OneShotSettings, run: RunLength) -> dict[str, Any]:
        return {"prune_step": run.steps(settings.prune_epoch)}

    @classmethod
    def fit_to_run(cls, kwargs: dict[str, Any], given: set[str], total: int) -> None:
        kwargs.setdefault("prune_step", 0)
        if kwargs["prune_step"] > total:
            raise beyond_run(cls.method, "prune_step", kwargs["prune_step"], total)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "prune_step": self.prune_step}

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
