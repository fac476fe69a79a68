"""SET (Mocanu et al., 2018): sparse from the start, drop by magnitude, regrow at random."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from growprune.methods.base import Phase, Sparsifier, check_choice, check_steps
from growprune.sparsity.patterns import topk_mask
from growprune.sparsity.scoring import magnitude, random_scores, restrict

DECAYS = ("cosine", "constant")


class SET(Sparsifier):
    """Every `update_interval` steps until `end_step`, each layer drops the smallest-magnitude
    fraction of its kept weights and grows as many new ones (at value zero, with zero optimizer
    state). The drop fraction decays with a cosine by default, as in the RigL paper.
    Subclasses change only :meth:`grow_scores`.
    """

    method = "set"
    title = "SET"
    regrows = True
    supports_nm = False

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

    def is_update_step(self, step: int) -> bool:
        return step < self.end_step and step % self.update_interval == 0

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        param = self.mask_set.by_name[name].param
        return random_scores(param.shape, param.device, self.seed, "grow", step, name)

    def on_step(self, step: int) -> None:
        if not self.is_update_step(step):
            return
        fraction = self.fraction_at(step)
        new_masks = {}
        for target in self.targets:
            mask = self.mask_set.mask(target.name)
            kept = int(mask.sum())
            moved = round(fraction * kept)
            if moved == 0:
                continue
            survivors = topk_mask(restrict(magnitude(target.param), mask), kept - moved)
            grown = topk_mask(restrict(self.grow_scores(target.name, step), ~survivors), moved)
            new_masks[target.name] = survivors | grown
        if new_masks:
            self.change_masks(new_masks, "drop-grow")
        self.after_update()

    def after_update(self) -> None:
        """Hook for subclasses to release per-update data."""

    def describe_phase(self, step: int) -> Phase:
        return Phase("sparse-training" if step < self.end_step else "finetune", step)
