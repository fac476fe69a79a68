"""Gradual magnitude pruning (Zhu & Gupta, 2017): sparsity follows a cubic ramp."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from growprune.methods.base import Phase, Sparsifier
from growprune.methods.settings import (
    AtLeast,
    Fixed,
    MethodSettings,
    OfBudget,
    Part,
    Rest,
    RunLength,
    ScheduleFitError,
    Share,
    StepArgument,
    bounded,
    check_steps,
)
from growprune.records import PhaseName
from growprune.sparsity.distribution import validate_sparsity
from growprune.sparsity.scoring import restrict


@dataclass(kw_only=True)
class GMPSettings(MethodSettings):
    initial_sparsity: float = bounded(0.0, ge=0, lt=1)


class GMP(Sparsifier):
    """Prune every `frequency` steps from `start_step` to `end_step`, fast first, slow last.

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3. Each prune ranks only weights
    still kept, so masks shrink monotonically.
    """

    method = "gmp"
    title = "GMP (Zhu & Gupta)"
    supports_nm = False
    settings = GMPSettings
    start_step = StepArgument(Fixed(0), epochs="start_epoch", within_run=True)
    end_step = StepArgument(Share(0.75, after="start_step"), epochs="end_epoch", within_run=True)
    frequency = StepArgument(Part(100), minimum=1, epochs="prune_every_epochs")
    # Zhu & Gupta 2017: the cubic ramp from 1/12 to 2/3 of the run, a prune every 1/48 of it, the
    # rest fine-tunes (the bundled recipes' epochs 2..16 of 24, every 0.5 epoch)
    paper_schedule = {
        "start_epoch": OfBudget(per=12),
        "end_epoch": OfBudget(2, per=3),
        "prune_every_epochs": OfBudget(per=48),
    }
    # one dense step, the ramp until a quarter of the run is left, a prune every eighth of it
    short_run = {
        "start_step": Fixed(1),
        "end_step": AtLeast(2, Rest(AtLeast(1, Part(4)))),
        "frequency": AtLeast(1, Part(8)),
    }

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        start_step: int = 0,
        end_step: int,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.start_step, self.frequency = start_step, frequency
        self.end_step = check_steps("end_step", end_step, minimum=self.start_step)
        self.initial_sparsity = validate_sparsity(initial_sparsity, "initial_sparsity")
        super().__init__(model, optimizer, **kwargs)

    @classmethod
    def steady_schedule(cls, sparsity: float, never: int) -> dict[str, Any]:
        """Mid-ramp: the masks at half of `sparsity` from the start, the next prune never reached."""
        return {**super().steady_schedule(sparsity, never), "initial_sparsity": sparsity / 2}

    @classmethod
    def arguments_from(cls, settings: Any, run: RunLength) -> dict[str, Any]:
        if settings.end_epoch is not None and settings.end_epoch < settings.start_epoch:
            raise ValueError(
                f"{cls.method}: end_epoch {settings.end_epoch:g} is before start_epoch "
                f"{settings.start_epoch:g}; the pruning ramp runs from start_epoch to end_epoch"
            )
        return super().arguments_from(settings, run)

    @classmethod
    def check_fit(cls, kwargs: Mapping[str, Any], total: int) -> None:
        start, end = kwargs["start_step"], kwargs["end_step"]
        if end < start:
            raise ScheduleFitError(
                f"{cls.method}: end_step={end} is before start_step={start}", "the ramp needs end >= start"
            )

    def sparsity_at(self, step: int) -> float:
        if step <= self.start_step:
            return self.initial_sparsity
        if step >= self.end_step:
            return self.sparsity
        progress = (step - self.start_step) / (self.end_step - self.start_step)
        return self.sparsity + (self.initial_sparsity - self.sparsity) * (1.0 - progress) ** 3

    def _is_prune_step(self, step: int) -> bool:
        in_window = self.start_step <= step <= self.end_step
        return in_window and ((step - self.start_step) % self.frequency == 0 or step == self.end_step)

    def on_start(self) -> None:
        # Checked here, once `sparsity` is resolved but before the first prune touches weights.
        if self.initial_sparsity > self.sparsity:
            raise ValueError(
                f"initial_sparsity ({self.initial_sparsity}) must not exceed sparsity ({self.sparsity})"
            )
        self.on_step(0)

    def on_step(self, step: int) -> None:
        if not self._is_prune_step(step) or self.sparsity == 0.0:
            return
        fraction = self.sparsity_at(step) / self.sparsity
        if fraction == 0.0:
            return
        # restricted to each layer's mask as it is read: no copy of every mask at once
        scores = self.magnitude_scores(self.names).map(lambda n, s: restrict(s, self.mask_set.mask(n)))
        keep = self.keep_counts_at(fraction)
        if self.distribution != "global":
            # Per-layer counts are rounded per prune, so a layer can get one more weight than at
            # the previous prune (or one fewer than at the final one): clamp so masks only shrink
            # and end exact. Global counts only matter in sum, which is already monotone.
            keep = {n: max(self.keep_counts[n], min(k, self.mask_set.kept(n))) for n, k in keep.items()}
        self.change_masks(self.compute_masks(self.names, scores, keep), "prune")

    def describe_phase(self, step: int) -> Phase:
        if step < self.start_step:
            return Phase(PhaseName.DENSE, step)
        return Phase(PhaseName.PRUNING if step < self.end_step else PhaseName.FINETUNE, step)
