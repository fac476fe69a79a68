"""RigL (Evci et al., 2020): SET with regrowth by dense-gradient magnitude."""

from __future__ import annotations

import torch

from growprune.methods.set import SET


class RigL(SET):
    """Grows the inactive weights whose dense gradient is largest.

    The dense gradient is read in the optimizer pre-hook of an update step (after the closure,
    when there is one), before the gradients of pruned weights are masked, and released right
    after the update.
    """

    _grads: dict[str, torch.Tensor] | None = None
    method = "rigl"
    title = "RigL"

    def wants_dense_gradients(self, step: int) -> bool:
        return self.is_update_step(step)

    def before_optimizer_step(self, step: int) -> None:
        if self.is_update_step(step):
            self._grads = {t.name: self.dense_gradient_magnitude(t.name) for t in self.targets}

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        assert self._grads is not None  # guaranteed by on_step
        return self._grads[name]

    def after_update(self) -> None:
        self._grads = None
