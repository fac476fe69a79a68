"""Compact storage of a pruned layer: its kept values and their positions, nothing dense.

Why: with masked storage a layer at 90% sparsity still holds a dense weight, a dense gradient
and dense optimizer state, so sparse training costs more memory than dense (the mask comes on
top). In compact storage the layer's weight ``Parameter`` holds only the kept values (1-D, in
the order of their flat positions) and an int32 buffer holds those positions; an optimizer
creates its state for the values only. The dense weight exists only inside the layer's forward
and, recomputed, inside its backward (it is not saved between them), and the weight gradient is
computed in blocks of output rows and gathered at the kept positions, so at most one block of
one layer's dense gradient exists at a time.

The ``Parameter`` object is the one the user's optimizer (and any wrapper: accelerate,
Lightning) already holds: :func:`make_compact` and :func:`make_dense` swap its ``.data`` and
gather or scatter the optimizer's per-parameter state with it, never replace the object.
``module.state_dict()`` still shows the dense weight under its usual name and
``load_state_dict`` takes a dense weight, so checkpoint and export files keep their format.

Positions are int32 (4 bytes per kept value, a quarter of a bool mask's byte per weight at 75%
sparsity and less above): torch's ``index_select`` and ``index_put_`` take them directly, which
makes them both smaller and no slower than int64. A layer of 2**31 weights or more cannot be
stored compactly and is refused.

This module is the storage mechanism only (issue 25); the sparsifier decides which layers are
compact and when they grow back to dense.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

POSITIONS_SUFFIX = "_positions"
COMPACT_ATTR = "_growprune_compact"  # module attribute: CompactState of the compact leaf
# Largest block of a layer's dense weight gradient built at once (elements): 4M floats, 16 MiB.
GRAD_BLOCK_ELEMENTS = 1 << 22
MAX_COMPACT_NUMEL = 2**31 - 1


class CompactStorageError(ValueError):
    """A layer that compact storage cannot hold (its type, its size), named with the fix."""


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    """Flat positions (int32, ascending) of the True entries of a bool mask."""
    if mask.numel() > MAX_COMPACT_NUMEL:
        raise CompactStorageError(
            f"a layer of {mask.numel():,} weights is past int32 positions; keep it in masked storage"
        )
    return mask.reshape(-1).nonzero().reshape(-1).to(torch.int32)


Shape = torch.Size | tuple[int, ...]


def densify(values: torch.Tensor, positions: torch.Tensor, shape: Shape) -> torch.Tensor:
    """The dense tensor of ``shape`` holding ``values`` at ``positions`` and zeros elsewhere."""
    dense = values.new_zeros(math.prod(shape))
    dense.index_put_((positions,), values)
    return dense.view(shape)


def gather(dense: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The entries of ``dense`` at flat ``positions`` (a new 1-D tensor)."""
    return dense.reshape(-1).index_select(0, positions)


def mask_of(positions: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The bool mask (True = kept) that ``positions`` stand for."""
    mask = torch.zeros(math.prod(shape), dtype=torch.bool, device=positions.device)
    mask[positions.long()] = True
    return mask.view(shape)


# -- the weight gradient at kept positions, in row blocks ----------------------------------------
def _rows_per_block(rows: int, row_size: int) -> int:
    return max(1, min(rows, GRAD_BLOCK_ELEMENTS // max(1, row_size)))


def _gathered_grad(
    block_grad: Callable[[int, int], torch.Tensor], positions: torch.Tensor, rows: int, row_size: int
) -> torch.Tensor:
    """The weight gradient at ``positions``, from ``block_grad(r0, r1)`` = the dense gradient of
    output rows r0..r1 (shape [r1 - r0, row_size...]). Positions are ascending, so each block's
    positions are one contiguous slice of them."""
    step = _rows_per_block(rows, row_size)
    if step >= rows:
        return gather(block_grad(0, rows), positions)
    bounds = torch.arange(0, rows + step, step, device=positions.device).clamp_(max=rows) * row_size
    cuts = torch.searchsorted(positions, bounds.to(positions.dtype)).tolist()
    parts = []
    for b in range(len(cuts) - 1):
        lo, hi = cuts[b], cuts[b + 1]
        if lo == hi:
            continue
        r0 = b * step
        local = positions[lo:hi] - r0 * row_size
        parts.append(gather(block_grad(r0, min(rows, r0 + step)), local))
    if not parts:
        return positions.new_zeros(0, dtype=torch.float32)
    return torch.cat(parts)


class _CompactLinear(torch.autograd.Function):
    """``F.linear`` with the weight given as kept values at positions; the dense weight is built
    for the forward, dropped, and rebuilt for the backward (never saved)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                positions: torch.Tensor, shape: torch.Size) -> torch.Tensor:  # fmt: skip
        weight = densify(values, positions, shape)
        out = F.linear(x, weight, bias)
        ctx.save_for_backward(x, values, positions)
        ctx.shape, ctx.has_bias = shape, bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, values, positions = ctx.saved_tensors
        grad_x = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad.matmul(densify(values, positions, ctx.shape))
        grad2 = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])
            rows, cols = ctx.shape
            grad_values = _gathered_grad(
                lambda r0, r1: grad2[:, r0:r1].t().matmul(x2), positions, rows, cols
            ).to(values.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad2.sum(0)
        return grad_x, grad_values, grad_bias, None, None


class _CompactConv(torch.autograd.Function):
    """``F.conv1d/2d/3d`` with a compact weight; same contract as :class:`_CompactLinear`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                positions: torch.Tensor, shape: torch.Size, conv: nn.Module) -> torch.Tensor:  # fmt: skip
        weight = densify(values, positions, shape)
        out = conv._conv_forward(x, weight, bias)  # padding modes included
        ctx.save_for_backward(x, values, positions)
        ctx.shape, ctx.has_bias, ctx.conv = shape, bias is not None, conv
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, values, positions = ctx.saved_tensors
        conv = ctx.conv
        with torch.enable_grad():  # the conv's own backward, on a rebuilt dense weight
            x_ = x.detach().requires_grad_(ctx.needs_input_grad[0])
            weight = densify(values.detach(), positions, ctx.shape).requires_grad_(ctx.needs_input_grad[1])
            out = conv._conv_forward(x_, weight, None)
        inputs = [t for t, need in ((x_, ctx.needs_input_grad[0]), (weight, ctx.needs_input_grad[1])) if need]
        grads = list(torch.autograd.grad(out, inputs, grad)) if inputs else []
        grad_x = grads.pop(0) if ctx.needs_input_grad[0] else None
        grad_values = gather(grads.pop(0), positions) if ctx.needs_input_grad[1] else None
        grad_bias = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=[d for d in range(grad.dim()) if d != 1])
        return grad_x, grad_values, grad_bias, None, None, None


COMPACT_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class CompactState:
    """What a compact layer needs beyond its Parameter: the dense shape and its forward."""

    def __init__(self, module: nn.Module, leaf: str, shape: torch.Size) -> None:
        self.leaf, self.shape = leaf, shape
        # A forward the user set on the instance (rare) comes back; otherwise the class's.
        self.instance_forward = vars(module).get("forward")

    def positions(self, module: nn.Module) -> torch.Tensor:
        return getattr(module, f"{self.leaf}{POSITIONS_SUFFIX}")


def _compact_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    state: CompactState = getattr(module, COMPACT_ATTR)
    values = getattr(module, state.leaf)
    positions = state.positions(module)
    if isinstance(module, nn.Linear):
        return _CompactLinear.apply(x, values, module.bias, positions, state.shape)
    return _CompactConv.apply(x, values, module.bias, positions, state.shape, module)


def is_compact(module: nn.Module) -> bool:
    return hasattr(module, COMPACT_ATTR)


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight as a dense tensor (a new one for a compact layer, the Parameter's data
    otherwise): what reports, scoring and export read."""
    state: CompactState | None = getattr(module, COMPACT_ATTR, None)
    if state is None:
        return module.weight.detach()
    return densify(getattr(module, state.leaf).detach(), state.positions(module), state.shape)


def _optimizer_states(optimizer: torch.optim.Optimizer | None, param: nn.Parameter) -> dict[str, Any]:
    if optimizer is None:
        return {}
    return optimizer.state.get(param, {})


def make_compact(
    module: nn.Module,
    mask: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    leaf: str = "weight",
) -> None:
    """Store ``module.<leaf>`` compactly: kept values at the positions of ``mask``.

    The same Parameter object keeps its name and its place in the optimizer; every state tensor
    of the parameter's shape (momentum, Adam's moments) is gathered with it. Refuses a module
    type whose forward it cannot run (the error names it)."""
    if not isinstance(module, COMPACT_MODULES):
        raise CompactStorageError(
            f"compact storage runs Linear and Conv1d/2d/3d layers, not {type(module).__name__}; "
            "keep this layer in masked storage"
        )
    if leaf != "weight":
        raise CompactStorageError(f"compact storage holds a layer's 'weight', not '{leaf}'")
    param: nn.Parameter = getattr(module, leaf)
    if is_compact(module):
        make_dense(module, optimizer, leaf)
    shape = param.shape
    if tuple(mask.shape) != tuple(shape):
        raise CompactStorageError(f"mask of shape {tuple(mask.shape)} for a weight of shape {tuple(shape)}")
    positions = positions_of(mask.to(param.device))
    for key, value in _optimizer_states(optimizer, param).items():
        if isinstance(value, torch.Tensor) and value.shape == shape:
            _optimizer_states(optimizer, param)[key] = gather(value, positions)
    param.data = gather(param.data, positions)
    if param.grad is not None:
        param.grad = gather(param.grad, positions) if param.grad.shape == shape else None
    module.register_buffer(f"{leaf}{POSITIONS_SUFFIX}", positions, persistent=False)
    setattr(module, COMPACT_ATTR, CompactState(module, leaf, shape))
    module.forward = types.MethodType(_compact_forward, module)  # type: ignore[method-assign]
    module._growprune_state_dict_hooks = (  # type: ignore[assignment]
        module._register_state_dict_hook(_dense_in_state_dict),
        module._register_load_state_dict_pre_hook(_compact_on_load, with_module=True),
    )


def make_dense(
    module: nn.Module, optimizer: torch.optim.Optimizer | None = None, leaf: str = "weight"
) -> None:
    """Back to an ordinary dense weight: values scattered to their positions, zeros elsewhere
    (also in the optimizer's state: a grown weight starts from value 0 and state 0)."""
    state: CompactState | None = getattr(module, COMPACT_ATTR, None)
    if state is None:
        return
    param: nn.Parameter = getattr(module, leaf)
    positions = state.positions(module)
    count = positions.numel()
    for key, value in _optimizer_states(optimizer, param).items():
        if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == count:
            _optimizer_states(optimizer, param)[key] = densify(value, positions, state.shape)
    param.data = densify(param.data, positions, state.shape)
    if param.grad is not None:
        param.grad = densify(param.grad, positions, state.shape) if param.grad.numel() == count else None
    for handle in getattr(module, "_growprune_state_dict_hooks", ()):
        handle.remove()
    del module._growprune_state_dict_hooks
    delattr(module, f"{leaf}{POSITIONS_SUFFIX}")
    if state.instance_forward is not None:
        module.forward = state.instance_forward  # type: ignore[method-assign]
    else:
        del module.forward
    delattr(module, COMPACT_ATTR)


def _dense_in_state_dict(module: nn.Module, destination: dict[str, Any], prefix: str, _meta: Any) -> None:
    """``state_dict()`` shows the dense weight: checkpoint and export files keep their format."""
    state: CompactState = getattr(module, COMPACT_ATTR)
    key = prefix + state.leaf
    if key in destination:
        destination[key] = dense_weight(module)


def _compact_on_load(
    module: nn.Module, state_dict: Mapping[str, Any], prefix: str, *args: Any
) -> None:
    """``load_state_dict`` takes a dense weight: it is gathered at the layer's current positions
    (what the weight holds elsewhere is dropped: the sparsifier's masks decide what is kept)."""
    state: CompactState = getattr(module, COMPACT_ATTR)
    key = prefix + state.leaf
    value = state_dict.get(key)
    if isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(state.shape):
        assert isinstance(state_dict, dict)
        state_dict[key] = gather(value.to(getattr(module, state.leaf).device), state.positions(module))
