"""A made-up third-party method that declares nothing but one step argument, for the tests of
what the library derives from that declaration (recipes, callbacks, schedules, benchmarks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import growprune as gp
from growprune.methods.settings import Share, StepArgument


def midway_method(name: str) -> type[gp.Sparsifier]:
    """A fresh class named `name` (registering it is the caller's: registrations are global)."""

    class Midway(gp.Sparsifier):
        method = name
        prune_step = StepArgument(Share(0.5), minimum=1, epochs="prune_epoch", within_run=True)

        def __init__(
            self, model: nn.Module, optimizer: torch.optim.Optimizer, *, prune_step: int = 1, **kwargs: Any
        ) -> None:
            self.prune_step = prune_step
            super().__init__(model, optimizer, **kwargs)

    return Midway
