"""Short method schedules, optimizers and a training loop shared by the method tests.

Every schedule fits in ``STEPS`` optimizer steps and passes through each of its phases (dense,
pruning / drop-grow / ADMM / GaP, final prune, fine-tune), so checking the invariants after every
``sparsifier.step()`` covers every kind of mask change a method makes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import growprune as gp

STEPS = 24

SCHEDULES: dict[str, dict[str, Any]] = {
    "dense": {},
    "oneshot": {"prune_step": 5},
    "gmp": {"start_step": 2, "end_step": 14, "frequency": 3},
    "set": {"end_step": 18, "update_interval": 4},
    "rigl": {"end_step": 18, "update_interval": 4},
    "admm": {"pretrain_steps": 3, "admm_steps": 9, "update_interval": 3},
    "cgap": {"partitions": 3, "steps_per_phase": 3, "rounds": 2, "finetune_steps": 4},
}


def one_worker(sparsifier: gp.Sparsifier) -> None:
    """P-GaP's merger when this process is the only worker that trained: nothing to exchange
    (the round's prune still runs), so P-GaP goes through every invariant of a plain loop."""
    del sparsifier


# C-GaP is also run keeping optimizer state across phases: then only the masking of state,
# not a wholesale reset, protects regrown weights from ghost momentum.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: (name, kwargs) for name, kwargs in SCHEDULES.items()},
    "pgap": ("pgap", {**SCHEDULES["cgap"], "merger": one_worker}),
    "cgap_keep_state": ("cgap", {**SCHEDULES["cgap"], "reset_optimizer": "changed"}),
}
OPTIMIZERS = ("sgd", "adam")
# An optimizer that moves every weight, zero or not: growprune cannot rely on it keeping pruned
# weights at zero (as it does for SGD and Adam, whose post-step masking pass it skips), so only
# the post-step pass keeps invariant 1 here. The invariant grid runs it beside the two above.
NOISY = "sgld"


class LangevinSGD(torch.optim.SGD):
    """SGD plus Gaussian noise on every parameter (stochastic gradient Langevin dynamics)."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = super().step(closure)
        for group in self.param_groups:
            for param in group["params"]:
                param.add_(torch.randn_like(param), alpha=1e-3)
        return loss


def make_optimizer(kind: str, model: nn.Module, **overrides: Any) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(
            model.parameters(), **{"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, **overrides}
        )
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), **{"lr": 1e-2, **overrides})
    if kind == NOISY:
        return LangevinSGD(model.parameters(), **{"lr": 0.05, "momentum": 0.9, **overrides})
    raise ValueError(kind)


def make_sparsifier(
    variant: str, model: nn.Module, optimizer: torch.optim.Optimizer, **overrides: Any
) -> gp.Sparsifier:
    method, kwargs = VARIANTS[variant]
    cls = gp.get_method(method)
    defaults: dict[str, Any] = {"seed": 0} if method == "dense" else {"sparsity": 0.75, "seed": 0}
    return cls(model, optimizer, **{**defaults, **kwargs, **overrides})


def loss_of(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    if x.is_floating_point():
        x = x.to(next(model.parameters()).dtype)
    return F.cross_entropy(model(x).float(), y)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sparsifier: gp.Sparsifier,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]],
    after_step: Callable[[int], None] | None = None,
    autocast: torch.dtype | None = None,
) -> None:
    """The loop of the README: forward, backward, optimizer.step(), sparsifier.step()."""
    for batch in data:
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            loss = loss_of(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()
        if after_step is not None:
            after_step(sparsifier.step_count)


def params_by_name(sparsifier: gp.Sparsifier) -> dict[str, nn.Parameter]:
    return {t.name: t.param for t in sparsifier.targets}


def snapshot_masks(sparsifier: gp.Sparsifier) -> dict[str, torch.Tensor]:
    return {n: m.clone() for n, m in sparsifier.masks.items()}
