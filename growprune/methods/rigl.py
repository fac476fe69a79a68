"""RigL (Evci et al., 2020): SET with regrowth by dense-gradient magnitude."""

from __future__ import annotations

import torch

from growprune.methods.set import SET
from growprune.sparsity.scoring import gradient_magnitude


class RigL(SET):
    """Grows the inactive weights whose dense gradient is largest.

    The dense gradient is read in the optimizer pre-hook of an update step, before the
    gradients of pruned weights are masked, and released right after the update.
    """

    _grads: dict[str, torch.Tensor] | None = None
    _optimizer_ran = False

    method = "rigl"

    def before_optimizer_step(self, step: int) -> None:
        self._optimizer_ran = True
        if self.is_update_step(step):
            self._grads = {t.name: gradient_magnitude(t.param.grad, t.name) for t in self.targets}

    def on_step(self, step: int) -> None:
        if self.is_update_step(step) and self._grads is None:
            if not self._optimizer_ran:
                raise RuntimeError(
                    "RigL update without recorded gradients: call optimizer.step() before "
                    "sparsifier.step() in every iteration"
                )
            # The optimizer ran before but not this time: AMP's GradScaler skipped the step
            # because of inf/NaN gradients. There is no trustworthy gradient to grow by, so the
            # update is skipped like the step (the topology waits for the next interval).
            return
        super().on_step(step)

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        assert self._grads is not None  # guaranteed by on_step
        return self._grads[name]

    def after_update(self) -> None:
        self._grads = None
