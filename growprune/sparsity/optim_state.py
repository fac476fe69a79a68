"""Keep optimizer state of pruned weights at zero.

The reference GaP code masked weights but not momentum, so a pruned weight's momentum kept
pushing it and a regrown weight started with stale momentum ("ghost momentum"). Here gradients
of pruned weights are masked before every optimizer step (so element-wise optimizers never put
state there) and, whenever masks change, the state of newly pruned entries is zeroed with the
one function below. It refuses optimizer state it does not know instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from growprune.sparsity.sharding import local, local_part

# Per-element state tensors whose "fresh" value is zero, by the torch.optim names.
ZEROABLE_STATE = frozenset(
    {
        "momentum_buffer",  # SGD
        "exp_avg",  # Adam, AdamW, NAdam, RAdam, Adamax
        "exp_avg_sq",
        "max_exp_avg_sq",  # amsgrad
        "square_avg",  # RMSprop, Adadelta
        "grad_avg",  # RMSprop centered
        "acc_delta",  # Adadelta
        "exp_inf",  # Adamax
        "sum",  # Adagrad (initial_accumulator_value=0 is the default)
        "mu_product",  # NAdam keeps this scalar, skipped by shape below
        "prev",  # Rprop
    }
)


@torch.no_grad()
def mask_optimizer_state(
    optimizer: torch.optim.Optimizer, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Zero the state of every masked-out entry of the given (parameter, bool mask) pairs.

    LBFGS keeps a curvature history of flat vectors over all parameters, which no per-entry
    zeroing can fix: a mask change forgets it (the next step restarts from the gradient).
    """
    if isinstance(optimizer, torch.optim.LBFGS):
        optimizer.state.clear()
        return
    for param, mask in pairs:
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in state.items():
            if not isinstance(value, torch.Tensor) or value.shape != param.shape:
                continue  # step counters and other scalars
            if key not in ZEROABLE_STATE:
                raise TypeError(
                    f"optimizer {type(optimizer).__name__} keeps per-weight state '{key}' that "
                    "growprune does not know how to reset for pruned weights; use SGD, Adam, "
                    "AdamW, RMSprop, Adagrad or Adadelta, or reset_optimizer='all'"
                )
            local(value).mul_(local_part(mask, value).to(value.dtype))  # per shard under FSDP2


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a framework's wrapper.

    accelerate's ``AcceleratedOptimizer`` (itself an ``Optimizer`` subclass, without the hook
    registry) and DeepSpeed-style wrappers expose it as ``.optimizer``, Lightning's
    ``LightningOptimizer`` as ``._optimizer``. Hooks must go on the innermost torch optimizer:
    every wrapper ends in its ``step``, and only when the step really runs.
    """
    current = optimizer
    for _ in range(8):  # wrappers of wrappers, but never an endless chain
        inner = None
        for name in ("optimizer", "_optimizer"):
            candidate = getattr(current, name, None)
            if candidate is not None and candidate is not current:
                inner = candidate
                break
        if inner is None:
            break
        current = inner
    if isinstance(current, torch.optim.Optimizer) and hasattr(current, "_optimizer_step_pre_hooks"):
        return current
    raise TypeError(
        f"optimizer must be a torch.optim.Optimizer or wrap one as `.optimizer`, got "
        f"{type(optimizer).__name__}"
    )


def reset_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Forget all optimizer state, as if a fresh optimizer were built (the authors' GaP code)."""
    optimizer.state.clear()
