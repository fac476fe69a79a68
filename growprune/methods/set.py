"""SET (Mocanu et al., 2018): sparse from the start, drop by magnitude, regrow at random."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from growprune.methods.base import Phase, Sparsifier, check_choice
from growprune.methods.settings import (
    AtLeast,
    EverySteps,
    MethodSettings,
    OfBudget,
    Part,
    ScheduleFitError,
    Share,
    StepArgument,
    bounded,
)
from growprune.records import PhaseName
from growprune.sparsity.patterns import topk_mask
from growprune.sparsity.scoring import LazyScores, random_scores

DECAYS = ("cosine", "constant")


@dataclass(kw_only=True)
class SETSettings(MethodSettings):
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
    end_step = StepArgument(Share(0.75), minimum=1, epochs="end_epoch", within_run=True)
    update_interval = StepArgument(Part(100), minimum=1, epochs="update_every_epochs")
    # Mocanu et al. 2018 / Evci et al. 2020 (the RigL paper's settings, for both): drop fraction 0.3
    # with cosine decay, an update every 100 steps (at least 4 updates in all), updates stop at 75%
    paper_schedule = {
        "end_epoch": OfBudget(0.75),
        "update_every_epochs": EverySteps(100, updates=4, until="end_epoch"),
        "drop_fraction": 0.3,
        "decay": "cosine",
    }
    # updates until the run's end, one every quarter of it
    short_run = {"end_step": Share(1.0), "update_interval": AtLeast(1, Part(4))}

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
        self.end_step, self.update_interval = end_step, update_interval
        if not 0.0 < drop_fraction <= 1.0:
            raise ValueError(f"drop_fraction must be in (0, 1], got {drop_fraction!r}")
        self.drop_fraction = float(drop_fraction)
        self.decay = check_choice("decay", decay, DECAYS)
        super().__init__(model, optimizer, **kwargs)

    @classmethod
    def check_fit(cls, kwargs: Mapping[str, Any], total: int) -> None:
        interval, end = kwargs["update_interval"], kwargs["end_step"]
        if interval >= end:
            raise ScheduleFitError(
                f"{cls.method}: update_interval={interval} >= end_step={end}, so masks would never be "
                "updated",
                "lower update_interval or raise end_step (or train longer)",
            )

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
