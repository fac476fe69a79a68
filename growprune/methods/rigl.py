"""RigL (Evci et al., 2020): SET with regrowth by dense-gradient magnitude."""

from __future__ import annotations

import torch

from growprune.methods.set import SET
from growprune.sparsity.scoring import DenseGradient, top_by_gradient


class RigL(SET):
    """Grows the inactive weights whose dense gradient is largest.

    The dense gradient is read in the optimizer pre-hook of an update step (after the closure,
    when there is one), before the gradients of pruned weights are masked, and released right
    after the update. Each layer grows as many weights as it drops, so in compact storage only
    that many of its largest pruned gradients are gathered in backward
    (:meth:`growth_candidates`), never its dense gradient.
    """

    _grads: dict[str, DenseGradient] | None = None
    method = "rigl"
    title = "RigL"

    def wants_dense_gradients(self, step: int) -> bool:
        return self.is_update_step(step)

    def growth_candidates(self, name: str, step: int) -> int | None:
        return self.moved_at(name, step)

    def before_optimizer_step(self, step: int) -> None:
        if self.is_update_step(step):
            self._grads = self.take_dense_gradients(self.names)

    def grow(self, name: str, step: int, survivors: torch.Tensor, count: int) -> torch.Tensor:
        assert self._grads is not None  # guaranteed by on_step
        return top_by_gradient(self._grads.pop(name), survivors, count)

    def after_update(self) -> None:
        self._grads = None
