"""SET (Mocanu et al., 2018): sparse from the start, drop by magnitude, regrow at random."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from growprune.methods.base import Phase, Sparsifier, check_choice, check_steps
from growprune.methods.settings import MethodSettings, RunLength, ScheduleFitError, beyond_run, bounded
from growprune.records import PhaseName
from growprune.sparsity.patterns import topk_mask
from growprune.sparsity.scoring import LazyScores, random_scores

DECAYS = ("cosine", "constant")


@dataclass(kw_only=True)
class SETSettings(MethodSettings):
    end_epoch: float | None = bounded(None, gt=0, description="default: 75% of training")
    update_every_epochs: float = bounded(0.25, gt=0)
    drop_fraction: float = bounded(0.3, gt=0, le=1)
    decay: Literal["cosine", "constant"] = "cosine"


class SET(Sparsifier):
    """Every `update_interval` steps until `end_step`, each layer drops the smallest-magnitude
    fraction of its kept weights and grows as many new ones (at value zero, with zero optimizer
    state). The drop fraction decays with a cosine by default, as in the RigL paper.
    Subclasses change only :meth:`grow`.
    """

    method = "set"
    title = "SET"
    regrows = True
    supports_nm = False
    settings = SETSettings
    step_arguments = {"end_step": 1, "update_interval": 1}
    step_defaults = {"end_step": "0.75 T", "update_interval": "max(1, T // 100)"}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        end_step: int,
        update_interval: int = 100,
        drop_fraction: float = 0.3,
        decay: str = "cosine",
        **kwargs: Any,
    ) -> None:
        self.end_step = check_steps("end_step", end_step, minimum=1)
        self.update_interval = check_steps("update_interval", update_interval, minimum=1)
        if not 0.0 < drop_fraction <= 1.0:
            raise ValueError(f"drop_fraction must be in (0, 1], got {drop_fraction!r}")
        self.drop_fraction = float(drop_fraction)
        self.decay = check_choice("decay", decay, DECAYS)
        super().__init__(model, optimizer, **kwargs)

    @classmethod
    def arguments_from(cls, settings: SETSettings, run: RunLength) -> dict[str, Any]:
        end = run.steps(settings.end_epoch) if settings.end_epoch is not None else run.fraction(0.75)
        return {
            "end_step": max(1, end),
            "update_interval": run.steps(settings.update_every_epochs, 1),
            "drop_fraction": settings.drop_fraction,
            "decay": settings.decay,
        }

    @classmethod
    def fit_to_run(cls, kwargs: dict[str, Any], given: set[str], total: int) -> None:
        end = kwargs.setdefault("end_step", max(1, round(0.75 * total)))
        if end > total:
            raise beyond_run(cls.method, "end_step", end, total)
        interval = kwargs.setdefault("update_interval", max(1, total // 100))
        if interval >= end:
            raise ScheduleFitError(
                f"{cls.method}: update_interval={interval} >= end_step={end}, so masks would never be "
                "updated",
                "lower update_interval or raise end_step (or train longer)",
            )

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "end_step": self.end_step,
            "update_interval": self.update_interval,
            "drop_fraction": self.drop_fraction,
            "decay": self.decay,
        }

    def on_start(self) -> None:
        self.change_masks(self.compute_masks(self.names, self.random_scores(self.names, "init")), "init")

    def fraction_at(self, step: int) -> float:
        if self.decay == "constant":
            return self.drop_fraction
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

    def moved_at(self, name: str, step: int) -> int:
        """How many weights layer `name` drops (and grows) at update `step`, masks as they are now."""
        return round(self.fraction_at(step) * self.mask_set.kept(name))

    def is_update_step(self, step: int) -> bool:
        return step < self.end_step and step % self.update_interval == 0

    def grow(self, name: str, step: int, survivors: torch.Tensor, count: int) -> torch.Tensor:
        """Mask of the `count` weights layer `name` grows at update `step`, chosen outside
        `survivors` (the kept weights it does not drop). SET: seeded random scores."""
        target = self.mask_set.by_name[name]
        scores = random_scores(target.shape, target.param.device, self.seed, "grow", step, name)
        return topk_mask(scores.masked_fill_(survivors, -1.0), count)

    def on_step(self, step: int) -> None:
        if not self.is_update_step(step):
            return
        fraction = self.fraction_at(step)
        moves = {}
        for name in self.names:
            kept = self.mask_set.kept(name)
            moved = round(fraction * kept)  # as moved_at()
            if moved:
                moves[name] = (kept, moved)

        def new_mask(name: str) -> torch.Tensor:
            kept, moved = moves[name]
            survivors = self.kept_by_magnitude(name, kept - moved)
            return survivors.logical_or_(self.grow(name, step, survivors, moved))

        if moves:  # each layer's new mask made as it is installed: one layer's at a time
            self.change_masks(LazyScores(list(moves), new_mask), "drop-grow")
        self.after_update()

    def after_update(self) -> None:
        """Hook for subclasses to release per-update data."""

    def describe_phase(self, step: int) -> Phase:
        return Phase(PhaseName.SPARSE_TRAINING if step < self.end_step else PhaseName.FINETUNE, step)
