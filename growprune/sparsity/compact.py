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

import ctypes
import math
import os
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from growprune.sparsity.patterns import topk_mask

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
    flat = mask.reshape(-1)
    # nonzero() gives int64 positions: made a block at a time, so only int32 ones are ever whole
    block = 1 << 22
    if flat.numel() <= block:
        return flat.nonzero().reshape(-1).to(torch.int32)
    parts = [
        flat[start : start + block].nonzero().reshape(-1).to(torch.int32).add_(start)
        for start in range(0, flat.numel(), block)
    ]
    return torch.cat(parts)


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


def set_data(param: torch.Tensor, data: torch.Tensor) -> None:
    """``param.data = data`` for data of another shape, with a fresh gradient accumulator.

    autograd keeps one accumulator node per leaf while anything references it (the graph of a
    loss still held by the loop, say), with the shape it had when made; after a shape change the
    next backward would be checked against the old shape. torch drops the cached node when the
    data's dtype changes, so the data passes through an empty tensor of another dtype first."""
    if data.shape != param.shape:
        other = torch.float64 if data.dtype != torch.float64 else torch.float32
        param.data = data.new_empty(0, dtype=other)
    param.data = data


def remap(values: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Values held at positions `old` moved to positions `new` (0 where `new` has a position that
    `old` lacks), without building the dense tensor: both are ascending, so a binary search
    finds each new position among the old ones."""
    if old.numel() == 0:
        return values.new_zeros(new.numel())
    index = torch.searchsorted(old, new).clamp_(max=old.numel() - 1)
    found = old.index_select(0, index) == new
    out = values.index_select(0, index)
    return out.masked_fill_(~found, 0)


# The dense weight built for a forward or a backward lives in one reused, all-zero buffer per
# thread, dtype and device: a fresh 64 MiB tensor costs more in page faults (on CPU) than
# filling it does. After use only the positions written are cleared again, so the buffer stays
# zero. Its size is the largest compact layer's: the "one layer's dense weight at a time".
_SCRATCH = threading.local()


def _scratch_dense(values: torch.Tensor, positions: torch.Tensor, shape: Shape) -> torch.Tensor:
    pool: dict[tuple[torch.dtype, torch.device], torch.Tensor] = getattr(_SCRATCH, "pool", None) or {}
    _SCRATCH.pool = pool
    numel = math.prod(shape)
    key = (values.dtype, values.device)
    buffer = pool.get(key)
    if buffer is None or buffer.numel() < numel:
        pool.pop(key, None)  # the smaller one goes before the larger one is made
        buffer = pool[key] = values.new_zeros(numel)
    flat = buffer[:numel]
    flat.index_put_((positions,), values)
    return flat.view(shape)


def _release(dense: torch.Tensor, positions: torch.Tensor) -> None:
    """Zero again the positions :func:`_scratch_dense` wrote."""
    dense.view(-1).index_put_((positions,), dense.new_zeros(()))


def release_scratch() -> None:
    """Free this thread's scratch buffers; the next compact forward makes them again. Called
    before each optimizer step: the step (Adam's temporaries for a dense layer) is where the
    peak is, and the buffer is not needed until the next forward (measured on the 67M MLP, C-GaP
    80%: the peak falls by the buffer's 64 MiB, the step costs one page-faulting fill more)."""
    _SCRATCH.pool = {}


# glibc's malloc serves a request from its heap, not from a fresh mapping, once it is below the
# mmap threshold, and it raises that threshold (up to 32 MiB) each time a large block is freed.
# Compact storage frees and allocates blocks of kept values of a few MiB at every mask change, so
# with the moving threshold they pile up in the heap, which is never returned to the system: the
# process's resident memory then grows far past what it holds (measured: C-GaP at 80% on a 67M
# MLP peaked at 1,120 MiB with it, 796 MiB with the threshold fixed at 1 MiB; dense training 1,256).
MALLOC_MMAP_THRESHOLD = 1 << 20
MALLOC_TUNING_ENV = "GROWPRUNE_MALLOC_TUNING"
_malloc_tuned = False


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process (once), so memory freed by compact
    layers goes back to the system. A process-wide setting: it is done only when compact storage
    is asked for, only on glibc, and not at all with ``GROWPRUNE_MALLOC_TUNING=0``. True if set."""
    global _malloc_tuned
    if _malloc_tuned or os.environ.get(MALLOC_TUNING_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return _malloc_tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, another libc): its allocator is left as it is
    M_MMAP_THRESHOLD = -3
    _malloc_tuned = bool(mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD))
    return _malloc_tuned


# -- the weight gradient at kept positions, in row blocks ----------------------------------------
def _rows_per_block(rows: int, row_size: int) -> int:
    return max(1, min(rows, GRAD_BLOCK_ELEMENTS // max(1, row_size)))


class GrowthCandidates:
    """What a regrowth by gradient magnitude (RigL) reads of a compact layer's dense gradient,
    gathered block by block in backward so that the dense gradient never exists whole: the
    `count` largest |gradient| entries outside the kept positions (ties to the lowest flat index,
    as :func:`topk_mask`) and |gradient| at the kept positions. The update grows at most `count`
    weights among the positions it did not keep, and those are either kept now (their score is
    here) or pruned now, where any it grows is among these `count` -- so ranking the layer
    from this record chooses exactly what ranking the dense gradient would."""

    def __init__(self, count: int, positions: torch.Tensor, shape: torch.Size) -> None:
        self.count, self.positions, self.shape = count, positions, shape
        self.values = torch.empty(0, dtype=torch.float32, device=positions.device)
        self.indices = torch.empty(0, dtype=torch.int64, device=positions.device)
        self.kept: torch.Tensor | None = None

    def add_block(self, start: int, block: torch.Tensor, kept_in_block: torch.Tensor) -> None:
        """Take in the dense gradient of flat positions ``start..start + block.numel()``; blocks
        come in ascending order, `kept_in_block` are the kept positions among them (relative)."""
        scores = block.detach().reshape(-1).abs().float()
        scores[kept_in_block.long()] = -1.0  # |gradient| >= 0: never chosen over a pruned position
        chosen = topk_mask(scores, min(self.count, scores.numel())).nonzero().squeeze(1)
        chosen = chosen[scores[chosen] >= 0]
        indices = torch.cat([self.indices, chosen + start])  # still ascending: blocks come in order
        values = torch.cat([self.values, scores[chosen]])
        if indices.numel() > self.count:
            best = topk_mask(values, self.count)
            indices, values = indices[best], values[best]
        self.indices, self.values = indices, values

    def dense(self) -> torch.Tensor:
        """The layer's |gradient| where it was recorded, 0 elsewhere (float32, dense shape):
        a pruned position left out scores at most the lowest candidate and comes after it in
        flat order on a tie, so a top-k over this equals one over the dense gradient."""
        out = torch.zeros(math.prod(self.shape), dtype=torch.float32, device=self.positions.device)
        if self.kept is not None:
            out[self.positions.long()] = self.kept
        out[self.indices] = self.values
        return out.view(self.shape)

    def top(self, survivors: torch.Tensor, count: int) -> torch.Tensor:
        """The mask of the `count` highest |gradient| positions outside `survivors` (a subset of
        the kept positions), ties to the lowest flat index -- ``topk_mask(dense().masked_fill(
        survivors, -1), count)`` without the dense scores: only candidates and dropped kept
        positions can be among them."""
        positions = self.positions.long()
        kept = self.kept if self.kept is not None else torch.zeros(positions.numel())
        dropped = ~survivors.reshape(-1)[positions]
        indices = torch.cat([self.indices, positions[dropped]])
        values = torch.cat([self.values, kept[dropped]])
        order = indices.argsort()  # flat order, so that ties go to the lowest index
        indices, values = indices[order], values[order]
        chosen = indices[topk_mask(values, min(count, values.numel()))]
        grown = torch.zeros(survivors.numel(), dtype=torch.bool, device=survivors.device)
        grown[chosen] = True
        return grown.view_as(survivors)


Sink = torch.Tensor | GrowthCandidates  # where backward puts what a method reads of the dense gradient


def _gathered_grad(
    block_grad: Callable[[int, int], torch.Tensor],
    positions: torch.Tensor,
    rows: int,
    row_size: int,
    sink: Sink | None = None,
) -> torch.Tensor:
    """The weight gradient at ``positions``, from ``block_grad(r0, r1)`` = the dense gradient of
    output rows r0..r1 (shape [r1 - r0, row_size...]). Positions are ascending, so each block's
    positions are one contiguous slice of them. `sink` (for a method that reads the dense
    gradient: RigL's update steps) gets every block, kept or not: added to a dense tensor, or
    ranked into :class:`GrowthCandidates`."""
    step = _rows_per_block(rows, row_size)
    if step >= rows:
        block = block_grad(0, rows)
        _to_sink(sink, 0, block, positions)
        return _finish_sink(sink, gather(block, positions))
    bounds = torch.arange(0, rows + step, step, device=positions.device).clamp_(max=rows) * row_size
    cuts = torch.searchsorted(positions, bounds.to(positions.dtype)).tolist()
    parts = []
    for b in range(len(cuts) - 1):
        lo, hi = cuts[b], cuts[b + 1]
        if lo == hi and sink is None:
            continue
        r0, r1 = b * step, min(rows, (b + 1) * step)
        block = block_grad(r0, r1)
        _to_sink(sink, r0 * row_size, block, positions[lo:hi] - r0 * row_size)
        parts.append(gather(block, positions[lo:hi] - r0 * row_size))
    if not parts:
        return _finish_sink(sink, positions.new_zeros(0, dtype=torch.float32))
    return _finish_sink(sink, torch.cat(parts))


def _to_sink(sink: Sink | None, start: int, block: torch.Tensor, kept: torch.Tensor) -> None:
    if isinstance(sink, GrowthCandidates):
        sink.add_block(start, block, kept)
    elif sink is not None:
        sink.view(-1)[start : start + block.numel()].add_(block.reshape(-1))


def _finish_sink(sink: Sink | None, kept_grad: torch.Tensor) -> torch.Tensor:
    if isinstance(sink, GrowthCandidates):
        sink.kept = kept_grad.detach().abs().float()
    return kept_grad


class ReadDenseGradient:
    """What a method reads of a compact layer's dense gradient at the coming step (set by the
    sparsifier): the `count` largest |gradient| entries it could grow (:class:`GrowthCandidates`),
    or with `count` None the whole dense gradient, summed over the backward passes of the step."""

    def __init__(self, count: int | None) -> None:
        self.count = count


def _sink_for(state: CompactState, param: torch.Tensor, positions: torch.Tensor) -> Sink | None:
    """Where this backward pass puts what the layer's method reads of its dense gradient, or
    None. A new step starts when the kept values' gradient was reset to None (``zero_grad()``),
    as ``.grad`` of a masked layer would; passes counted since then tell gradient accumulation
    apart (top-k of a sum is not found from the top-k of each pass)."""
    fresh = param.grad is None
    state.passes = 1 if fresh else state.passes + 1
    if state.passes > 1:
        state.accumulated = True
    if state.read is None:
        return None
    if fresh or state.gathered is None:
        if state.read.count is None:
            state.gathered = param.new_zeros(state.shape, dtype=torch.float32)
        else:
            state.gathered = GrowthCandidates(state.read.count, positions, state.shape)
    elif isinstance(state.gathered, GrowthCandidates):
        # A second pass into the same step: keep the whole gradient from here on; this step's
        # ranking lacks the earlier passes' gradient outside their own candidates.
        warnings.warn(
            "gradient accumulation seen by a compact layer at a step whose update ranks dense "
            "gradients (RigL): this update ranks the earlier passes' largest gradients only; later "
            "updates keep the whole dense gradient of each layer (exact, more memory)",
            stacklevel=2,
        )
        state.gathered = state.gathered.dense()
    return state.gathered


class _CompactLinear(torch.autograd.Function):
    """``F.linear`` with the weight given as kept values at positions; the dense weight is built
    for the forward, dropped, and rebuilt for the backward (never saved)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                positions: torch.Tensor, state: CompactState) -> torch.Tensor:  # fmt: skip
        weight = _scratch_dense(values, positions, state.shape)
        try:
            out = F.linear(x, weight, bias)
        finally:
            _release(weight, positions)
        ctx.save_for_backward(x, values, positions)
        ctx.state, ctx.has_bias = state, bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, values, positions = ctx.saved_tensors
        state: CompactState = ctx.state
        grad_x = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            weight = _scratch_dense(values, positions, state.shape)
            try:
                grad_x = grad.matmul(weight)
            finally:
                _release(weight, positions)
        grad2 = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])
            rows, cols = state.shape
            grad_values = _gathered_grad(
                lambda r0, r1: grad2[:, r0:r1].t().matmul(x2),
                positions,
                rows,
                cols,
                _sink_for(state, values, positions),
            ).to(values.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad2.sum(0)
        return grad_x, grad_values, grad_bias, None, None


class _CompactConv(torch.autograd.Function):
    """``F.conv1d/2d/3d`` with a compact weight; same contract as :class:`_CompactLinear`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                positions: torch.Tensor, state: CompactState, conv: nn.Module) -> torch.Tensor:  # fmt: skip
        weight = _scratch_dense(values, positions, state.shape)
        try:
            out = conv._conv_forward(x, weight, bias)  # padding modes included
        finally:
            _release(weight, positions)
        ctx.save_for_backward(x, values, positions)
        ctx.state, ctx.has_bias, ctx.conv = state, bias is not None, conv
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, values, positions = ctx.saved_tensors
        state: CompactState = ctx.state
        conv = ctx.conv
        with torch.enable_grad():  # the conv's own backward, on a rebuilt dense weight
            x_ = x.detach().requires_grad_(ctx.needs_input_grad[0])
            weight = densify(values.detach(), positions, state.shape).requires_grad_(ctx.needs_input_grad[1])
            out = conv._conv_forward(x_, weight, None)
        inputs = [t for t, need in ((x_, ctx.needs_input_grad[0]), (weight, ctx.needs_input_grad[1])) if need]
        grads = list(torch.autograd.grad(out, inputs, grad)) if inputs else []
        grad_x = grads.pop(0) if ctx.needs_input_grad[0] else None
        grad_values = None
        if ctx.needs_input_grad[1]:
            dense_grad = grads.pop(0)
            sink = _sink_for(state, values, positions)
            _to_sink(sink, 0, dense_grad, positions)
            grad_values = _finish_sink(sink, gather(dense_grad, positions))
        grad_bias = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=[d for d in range(grad.dim()) if d != 1])
        return grad_x, grad_values, grad_bias, None, None, None


COMPACT_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class CompactState:
    """What a compact layer needs beyond its Parameter: the dense shape, its forward, the
    optimizer whose state follows the values, and the name of the mask buffer a sparsifier
    keeps beside the weight (read when a dense weight is loaded)."""

    def __init__(
        self,
        module: nn.Module,
        leaf: str,
        shape: torch.Size,
        optimizer: torch.optim.Optimizer | None,
        mask_buffer: str | None,
    ) -> None:
        self.leaf, self.shape, self.mask_buffer = leaf, shape, mask_buffer
        # A forward the user set on the instance (rare) comes back; otherwise the class's.
        self.instance_forward = vars(module).get("forward")
        # Weak: the layer must not keep an optimizer alive (nor copy it along in a deepcopy).
        self.optimizer_ref = weakref.ref(optimizer) if optimizer is not None else None
        # Set by a method that reads dense gradients at the coming step (RigL): the backward then
        # gathers what it reads into `gathered`, one layer at a time (see _sink_for).
        self.read: ReadDenseGradient | None = None
        self.gathered: Sink | None = None
        self.passes = 0  # backward passes into the current step
        self.accumulated = False  # some step had more than one

    def positions(self, module: nn.Module) -> torch.Tensor:
        return getattr(module, f"{self.leaf}{POSITIONS_SUFFIX}")

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return None if self.optimizer_ref is None else self.optimizer_ref()


def _compact_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    state: CompactState = getattr(module, COMPACT_ATTR)
    values = getattr(module, state.leaf)
    positions = state.positions(module)
    if isinstance(module, nn.Linear):
        return _CompactLinear.apply(x, values, module.bias, positions, state)
    return _CompactConv.apply(x, values, module.bias, positions, state, module)


def is_compact(module: nn.Module) -> bool:
    return hasattr(module, COMPACT_ATTR)


def compact_state(module: nn.Module) -> CompactState | None:
    return getattr(module, COMPACT_ATTR, None)


def dense_shape(module: nn.Module, leaf: str = "weight") -> torch.Size:
    """The shape of ``module.<leaf>`` as the model defines it (the dense one when compact)."""
    state = compact_state(module)
    if state is not None and state.leaf == leaf:
        return state.shape
    return getattr(module, leaf).shape


def parameter_count(model: nn.Module) -> int:
    """The model's number of parameters as it defines them (a compact weight counts its dense
    shape, not the kept values it holds); shared parameters once."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        state = compact_state(module)
        for leaf, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            total += math.prod(state.shape) if state is not None and state.leaf == leaf else param.numel()
    return total


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


def check_compactable(module: nn.Module, leaf: str = "weight") -> None:
    """Raise :class:`CompactStorageError` unless ``module.<leaf>`` can be stored compactly."""
    if type(module) not in COMPACT_MODULES:
        raise CompactStorageError(
            f"compact storage runs nn.Linear and nn.Conv1d/2d/3d layers (not subclasses, whose forward "
            f"or owner may read the weight itself), not {type(module).__name__}; keep this layer in "
            "masked storage"
        )
    if leaf != "weight":
        raise CompactStorageError(f"compact storage holds a layer's 'weight', not '{leaf}'")


def _move(module: nn.Module, state: CompactState, new: torch.Tensor) -> None:
    """Re-lay the compact weight (values, gradient, optimizer state) from its positions to `new`;
    entries new to it start at 0, entries it drops are gone."""
    old = state.positions(module)
    if old.numel() == new.numel() and torch.equal(old, new):
        return
    param: nn.Parameter = getattr(module, state.leaf)
    count = old.numel()
    states = _optimizer_states(state.optimizer, param)
    for key, value in list(states.items()):
        if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == count:
            states[key] = remap(value, old, new)
    set_data(param, remap(param.data, old, new))
    if param.grad is not None:
        param.grad = remap(param.grad, old, new) if param.grad.numel() == count else None
    module.register_buffer(f"{state.leaf}{POSITIONS_SUFFIX}", new, persistent=False)


def make_compact(
    module: nn.Module,
    mask: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    leaf: str = "weight",
    mask_buffer: str | None = None,
) -> None:
    """Store ``module.<leaf>`` compactly: kept values at the positions of ``mask``.

    The same Parameter object keeps its name and its place in the optimizer; every state tensor
    of the parameter's shape (momentum, Adam's moments) is gathered with it. A layer already
    compact is moved to the new positions directly (kept entries keep value and state, new
    ones start at 0), without its dense weight. Refuses a module type whose forward it cannot
    run (the error names it). `mask_buffer`: the name of the buffer a sparsifier keeps the
    layer's mask in, read when a dense weight is loaded into the layer."""
    check_compactable(module, leaf)
    param: nn.Parameter = getattr(module, leaf)
    state = compact_state(module)
    shape = state.shape if state is not None else param.shape
    if tuple(mask.shape) != tuple(shape):
        raise CompactStorageError(f"mask of shape {tuple(mask.shape)} for a weight of shape {tuple(shape)}")
    positions = positions_of(mask.to(param.device))
    if state is not None:
        if optimizer is not None:
            state.optimizer_ref = weakref.ref(optimizer)
        state.mask_buffer = mask_buffer or state.mask_buffer
        _move(module, state, positions)
        return
    for key, value in _optimizer_states(optimizer, param).items():
        if isinstance(value, torch.Tensor) and value.shape == shape:
            _optimizer_states(optimizer, param)[key] = gather(value, positions)
    set_data(param, gather(param.data, positions))
    if param.grad is not None:
        param.grad = gather(param.grad, positions) if param.grad.shape == shape else None
    module.register_buffer(f"{leaf}{POSITIONS_SUFFIX}", positions, persistent=False)
    setattr(module, COMPACT_ATTR, CompactState(module, leaf, shape, optimizer, mask_buffer))
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
    optimizer = optimizer if optimizer is not None else state.optimizer
    param: nn.Parameter = getattr(module, leaf)
    positions = state.positions(module)
    count = positions.numel()
    for key, value in _optimizer_states(optimizer, param).items():
        if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == count:
            _optimizer_states(optimizer, param)[key] = densify(value, positions, state.shape)
    set_data(param, densify(param.data, positions, state.shape))
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


def fit_state_to_layout(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, positions: torch.Tensor, shape: Shape
) -> None:
    """Optimizer state loaded from a checkpoint of the other storage, laid out as `param` is
    now: dense state gathered at `positions` for a compact weight, per-value state scattered
    from `positions` for a dense one (a checkpoint's optimizer state follows the storage it was
    trained in, so a run can resume in either)."""
    states = optimizer.state.get(param)
    if not states:
        return
    compact = tuple(param.shape) != tuple(shape)
    for key, value in list(states.items()):
        if not isinstance(value, torch.Tensor) or value.shape == param.shape:
            continue
        if compact and tuple(value.shape) == tuple(shape):
            states[key] = gather(value, positions)
        elif not compact and value.dim() == 1 and value.numel() == positions.numel():
            states[key] = densify(value, positions, shape)


def _dense_in_state_dict(module: nn.Module, destination: dict[str, Any], prefix: str, _meta: Any) -> None:
    """``state_dict()`` shows the dense weight: checkpoint and export files keep their format."""
    state: CompactState = getattr(module, COMPACT_ATTR)
    key = prefix + state.leaf
    if key in destination:
        destination[key] = dense_weight(module)


def _compact_on_load(module: nn.Module, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` takes a dense weight, and the layer then holds all of it that may
    matter: the positions of the mask loaded with it (or of the layer's current mask) plus every
    nonzero of the loaded weight. That is what masked storage holds after the same load (the
    whole weight, masked at the sparsifier's next step), so a sparsifier that then trims the
    layer to its masks, or a merge that scores the loaded weight first (P-GaP), sees the same
    numbers in either storage. Values, gradient and optimizer state move to the new positions."""
    state: CompactState = getattr(module, COMPACT_ATTR)
    key = prefix + state.leaf
    value = state_dict.get(key)
    if not (isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(state.shape)):
        return  # torch reports the missing key or the wrong shape
    device = getattr(module, state.leaf).device
    value = value.to(device)
    base: torch.Tensor | None = None
    if state.mask_buffer is not None:
        incoming = state_dict.get(prefix + state.mask_buffer)
        current = getattr(module, state.mask_buffer, None)
        for candidate in (incoming, current):
            if isinstance(candidate, torch.Tensor) and tuple(candidate.shape) == tuple(state.shape):
                base = candidate.to(device=device, dtype=torch.bool)
                break
    if base is None:
        base = mask_of(state.positions(module), state.shape)
    _move(module, state, positions_of(base | (value != 0)))
    assert isinstance(state_dict, dict)
    state_dict[key] = gather(value, state.positions(module))
