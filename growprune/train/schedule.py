"""From epochs to optimizer steps: method arguments and the learning-rate schedule.

The learning rate is a pure function of the global step, so a resumed run needs nothing but the
step to be on the same curve (no scheduler object with hidden state to save).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from growprune.train.recipe import (
    ADMMMethod,
    GaPMethod,
    GMPMethod,
    MethodBase,
    OneShotMethod,
    PGaPMethod,
    Recipe,
    SETMethod,
)

CORE_KEYS = ("sparsity", "distribution", "pattern", "targets", "exclude")


def epochs_to_steps(epochs: float, steps_per_epoch: int, minimum: int = 0) -> int:
    return max(minimum, round(epochs * steps_per_epoch))


def total_steps(recipe: Recipe, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run; for GaP exactly the sum of its rounded phases."""
    method = recipe.method
    if isinstance(method, GaPMethod):
        phase = epochs_to_steps(method.epochs_per_phase, steps_per_epoch, 1)
        finetune = epochs_to_steps(method.finetune_epochs, steps_per_epoch)
        return method.gap_phases * phase + finetune
    assert recipe.training.epochs is not None  # filled by validation
    return epochs_to_steps(recipe.training.epochs, steps_per_epoch, minimum=1)


def method_kwargs(method: MethodBase, steps_per_epoch: int, total: int, seed: int) -> dict[str, Any]:
    """Keyword arguments for the method's sparsifier, schedules converted to steps."""
    kwargs: dict[str, Any] = {key: getattr(method, key) for key in CORE_KEYS}
    kwargs["exclude"] = kwargs["exclude"] or None
    kwargs["seed"] = seed
    if method.pattern != "unstructured":
        kwargs["sparsity"] = None if "sparsity" not in method.model_fields_set else method.sparsity

    def steps(epochs: float, minimum: int = 0) -> int:
        return epochs_to_steps(epochs, steps_per_epoch, minimum)

    if isinstance(method, OneShotMethod):
        kwargs["prune_step"] = steps(method.prune_epoch)
    elif isinstance(method, GMPMethod):
        kwargs.update(
            start_step=steps(method.start_epoch),
            end_step=max(steps(method.end_epoch), steps(method.start_epoch)),
            frequency=steps(method.prune_every_epochs, 1),
            initial_sparsity=method.initial_sparsity,
        )
    elif isinstance(method, SETMethod):
        end = steps(method.end_epoch) if method.end_epoch is not None else round(0.75 * total)
        kwargs.update(
            end_step=max(1, end),
            update_interval=steps(method.update_every_epochs, 1),
            drop_fraction=method.drop_fraction,
            decay=method.decay,
        )
    elif isinstance(method, ADMMMethod):
        kwargs.update(
            pretrain_steps=steps(method.pretrain_epochs),
            admm_steps=steps(method.admm_epochs, 1),
            rho=method.rho,
            update_interval=steps(method.update_every_epochs, 1),
        )
    elif isinstance(method, GaPMethod):
        kwargs.update(
            partitions=method.partitions,
            partition_mode=method.partition_mode,
            steps_per_phase=steps(method.epochs_per_phase, 1),
            rounds=method.rounds,
            finetune_steps=steps(method.finetune_epochs),
            init=method.init,
        )
        if isinstance(method, PGaPMethod):
            kwargs["merge_non_partition"] = method.merge_non_partition
        else:
            kwargs["reset_optimizer"] = method.reset_optimizer
    return kwargs


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


def build_lr_schedule(recipe: Recipe, steps_per_epoch: int, total: int) -> LRSchedule:
    sched = recipe.schedule
    segments: list[tuple[int, int]] = [(0, total)]
    if sched.restart_per_phase:
        method = recipe.method
        if not isinstance(method, GaPMethod):
            raise ValueError(
                f"schedule.restart_per_phase needs a GaP method (cgap, pgap), not '{method.name}'"
            )
        phase = epochs_to_steps(method.epochs_per_phase, steps_per_epoch, 1)
        gap_steps = method.gap_phases
        segments = [(k * phase, (k + 1) * phase) for k in range(gap_steps)]
        if total > gap_steps * phase:
            segments.append((gap_steps * phase, total))
    return LRSchedule(
        base_lr=recipe.optimizer.lr,
        min_lr=sched.min_lr,
        warmup_steps=epochs_to_steps(sched.warmup_epochs, steps_per_epoch),
        cosine=sched.name == "cosine",
        segments=tuple(segments),
    )
