"""The learning-rate schedule, in optimizer steps.

The learning rate is a pure function of the global step, so a resumed run needs nothing but the
step to be on the same curve (no scheduler object with hidden state to save).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from growprune.methods.settings import epochs_to_steps
from growprune.train.recipe import ScheduleConfig


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up then cosine (or constant), globally or restarted at every GaP step.

    `segments` are the [start, end) step ranges the curve restarts on: one range for a global
    schedule, one per GaP step plus one for fine-tuning when restarting per phase, as the
    authors' code does by building a fresh optimizer and scheduler at each step.
    """

    base_lr: float
    min_lr: float
    warmup_steps: int
    cosine: bool
    segments: tuple[tuple[int, int], ...]

    def factor(self, step: int) -> float:
        """Multiplier of base_lr for optimizer step `step` (0-based: the step about to run)."""
        start, end = self.segments[-1]
        for seg_start, seg_end in self.segments:
            if seg_start <= step < seg_end:
                start, end = seg_start, seg_end
                break
        local, length = step - start, max(1, end - start)
        warmup = min(self.warmup_steps, max(0, length - 1))
        if local < warmup:
            return (local + 1) / (warmup + 1)
        if not self.cosine:
            return 1.0
        progress = min(1.0, (local - warmup) / max(1, length - warmup))
        floor = self.min_lr / self.base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def lr(self, step: int) -> float:
        return self.base_lr * self.factor(step)


def build_lr_schedule(
    schedule: ScheduleConfig,
    base_lr: float,
    steps_per_epoch: int,
    total: int,
    phase_starts: list[int] | None = None,
) -> LRSchedule:
    """The recipe's schedule over `total` steps; restarted at `phase_starts` (the sparsifier's
    phases) when ``restart_per_phase`` asks for it."""
    warmup = epochs_to_steps(schedule.warmup_epochs, steps_per_epoch)
    if warmup >= total:
        raise ValueError(
            f"warmup_epochs {schedule.warmup_epochs:g} ({warmup} steps) is as long as the whole run ({total} "
            "steps), so the learning rate would never reach optimizer.lr; shorten the warm-up"
        )
    segments: list[tuple[int, int]] = [(0, total)]
    if schedule.restart_per_phase:
        if not phase_starts:
            raise ValueError("restart_per_phase needs a method with phases (cgap, pgap)")
        ends = [*phase_starts[1:], total]
        segments = [(start, end) for start, end in zip(phase_starts, ends) if end > start]
    return LRSchedule(
        base_lr=base_lr,
        min_lr=schedule.min_lr,
        warmup_steps=warmup,
        cosine=schedule.name == "cosine",
        segments=tuple(segments),
    )
