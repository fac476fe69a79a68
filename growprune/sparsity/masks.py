"""Masks: boolean module buffers, applied to weights and gradients in batched kernels.

Each mask is a bool buffer registered next to its parameter (``fc.weight`` -> ``fc.weight_mask``)
so it travels with ``model.state_dict()`` and ``model.to(...)`` like any other buffer.

Applying a bool mask with ``torch._foreach_mul_`` is about 4x slower than applying a mask of the
parameter's own dtype (it promotes per element), so a same-dtype copy is cached and rebuilt only
when a mask changes (tracked by the buffer's version counter and identity) or the parameter
moves. Layers whose mask keeps everything are left out of the batched calls entirely: in C-GaP
that is the whole dense partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from growprune.sparsity.compact import dense_weight, is_compact
from growprune.sparsity.targets import Target

MASK_SUFFIX = "_mask"
LayerKey = tuple[int, int, torch.dtype, torch.device]  # mask identity and version, param dtype/device
MASKED_MODULE_ATTR = "_growprune_masked"  # module attribute: {leaf: buffer name}


def tensor_stamp(tensor: torch.Tensor) -> tuple[int, int, int]:
    """Identity, version counter and storage of a tensor: any in-place write (``copy_``,
    ``load_state_dict``, an optimizer step, GradScaler's unscale), a new tensor in its place or a
    swapped ``.data`` changes it. How growprune notices changes it did not make."""
    return (id(tensor), tensor._version, tensor.data_ptr())


class MaskSet:
    """The masks of a set of targets, and the cheap operations done with them every step."""

    def __init__(self, targets: Sequence[Target], persistent: bool = True) -> None:
        self.targets = list(targets)
        self.by_name = {t.name: t for t in self.targets}
        self._cache_key: list[tuple[int, int, torch.dtype, torch.device]] | None = None
        self._active: tuple[list[nn.Parameter], list[torch.Tensor]] = ([], [])
        self._active_names: list[str] = []
        # The same cached masks by layer (None: keeps everything), with the key each was built
        # for, so one gradient can be masked as it is accumulated without rebuilding the lists;
        # and the stamp of each gradient right after it was masked: a gradient
        # still carrying that stamp needs no second pass before the optimizer step.
        self._layer_masks: dict[str, tuple[LayerKey, torch.Tensor | None]] = {}
        self._grad_stamps: dict[str, tuple[int, int, int]] = {}
        # Bumped whenever a mask buffer is found changed (by us, by load_state_dict, or edited in
        # place): lets the sparsifier notice mask changes it did not make.
        self.revision = 0
        # Layers in compact storage (growprune.sparsity.compact): their weight holds only kept
        # values, so there is nothing to multiply by a mask; they are left out of the batched
        # passes (and their weights are stamped apart, see weight_stamp).
        self.compact: frozenset[str] = frozenset()
        for target in self.targets:  # check all before registering any: fail without side effects
            buffer = f"{target.leaf}{MASK_SUFFIX}"
            if hasattr(target.module, buffer):
                raise ValueError(
                    f"'{target.name}' already has a mask buffer '{buffer}': another sparsifier "
                    "owns this model (call .remove() on it first), or the model is a copy of one "
                    "that had a sparsifier (drop its masks with growprune.sparsity.masks.strip_masks(model))"
                )
        for target in self.targets:
            buffer = f"{target.leaf}{MASK_SUFFIX}"
            mask = torch.ones_like(target.param, dtype=torch.bool)
            target.module.register_buffer(buffer, mask, persistent=persistent)
            masked = getattr(target.module, MASKED_MODULE_ATTR, {})
            masked[target.leaf] = buffer
            setattr(target.module, MASKED_MODULE_ATTR, masked)

    # -- access -----------------------------------------------------------------------------
    def mask(self, name: str) -> torch.Tensor:
        target = self.by_name[name]
        return getattr(target.module, f"{target.leaf}{MASK_SUFFIX}")

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {t.name: self.mask(t.name) for t in self.targets}

    def set(self, name: str, mask: torch.Tensor) -> None:
        """Replace one mask in place (same buffer object, so references stay valid)."""
        current = self.mask(name)
        if mask.shape != current.shape:
            raise ValueError(
                f"mask for '{name}' has shape {tuple(mask.shape)}, expected {tuple(current.shape)}"
            )
        current.copy_(mask.to(device=current.device, dtype=torch.bool))

    def update(self, masks: Mapping[str, torch.Tensor]) -> None:
        for name, mask in masks.items():
            self.set(name, mask)

    def kept(self, name: str) -> int:
        return int(self.mask(name).count_nonzero())  # a bool .sum() would copy the mask to int64

    def set_compact(self, names: frozenset[str]) -> None:
        """Which layers are stored compactly now (the cached lists are rebuilt)."""
        if names != self.compact:
            self.compact = names
            self._cache_key = None

    # -- per-step work ----------------------------------------------------------------------
    def _active_lists(self) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
        """Parameters with a non-trivial mask and their masks in the parameter's dtype."""
        masks = [self.mask(t.name) for t in self.targets]
        params = [t.param for t in self.targets]
        key = [(id(m), m._version, p.dtype, p.device) for m, p in zip(masks, params)]
        if key != self._cache_key:
            active = [
                (t.name, p, m.to(p.dtype))
                for t, p, m in zip(self.targets, params, masks)
                if t.name not in self.compact and not bool(m.all())
            ]
            self._active_names = [n for n, _, _ in active]
            self._active = ([p for _, p, _ in active], [m for _, _, m in active])
            cached = {n: m for n, _, m in active}
            self._grad_stamps.clear()  # gradients masked with the old masks must be masked again
            self._layer_masks = {t.name: (k, cached.get(t.name)) for t, k in zip(self.targets, key)}
            self._cache_key = key
            self.revision += 1
        return self._active

    def weight_stamp(self) -> list[tuple[int, int, int]]:
        """The :func:`tensor_stamp` of every masked parameter, then of every compact one (a
        weight loaded into a compact layer may hold more than its mask keeps)."""
        params, _ = self._active_lists()
        compact = [t.param for t in self.targets if t.name in self.compact]
        return [tensor_stamp(p) for p in params + compact]

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        params, masks = self._active_lists()
        if params:
            torch._foreach_mul_(params, masks)

    @torch.no_grad()
    def mask_grad(self, name: str) -> None:
        """Mask one layer's gradient as soon as backward has accumulated it.

        Runs from a ``post_accumulate_grad`` hook, so gradient clipping, logging of gradient
        norms and any other code between backward and the optimizer step see the sparse
        gradient, whoever drives the loop.
        """
        target = self.by_name[name]
        param = target.param
        grad = param.grad
        if grad is None or grad.layout != torch.strided:
            return  # sparse gradients are refused by apply_to_grads before the step
        if name in self.compact:
            return  # only kept values have a gradient
        mask = self.mask(name)
        key = (id(mask), mask._version, param.dtype, param.device)
        cached = self._layer_masks.get(name)
        if cached is None or cached[0] != key:
            self._active_lists()  # a mask changed: rebuild the shared cache
            cached = self._layer_masks[name]
        if cached[1] is not None:
            grad.mul_(cached[1])
            self._grad_stamps[name] = tensor_stamp(grad)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        """Mask every gradient not already masked since it last changed (manual gradients,
        in-place rescaling by GradScaler or clipping, data-parallel write-backs)."""
        params, masks = self._active_lists()
        stamps = self._grad_stamps
        pairs = []
        for name, p, m in zip(self._active_names, params, masks):
            grad = p.grad
            if grad is None:
                continue
            if grad.layout != torch.strided:
                raise ValueError(
                    "growprune cannot mask sparse gradients; use dense gradients for pruned layers"
                )
            if stamps.get(name) != tensor_stamp(grad):
                pairs.append((grad, m))
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])
        stamps.clear()

    def remove(self) -> None:
        """Drop the mask buffers from the model (weights keep their zeros)."""
        for target in self.targets:
            _drop_mask(target.module, target.leaf)
        self._cache_key = None
        self._layer_masks = {}


def strip_masks(model: nn.Module) -> int:
    """Drop every growprune mask buffer from `model` (weights keep their zeros).

    For a model that carries masks without a live sparsifier, e.g. a ``copy.deepcopy`` of a
    sparsified model. Returns the number of buffers removed.
    """
    return sum(
        _drop_mask(module, leaf)
        for module in model.modules()
        for leaf in list(getattr(module, MASKED_MODULE_ATTR, {}))
    )


def _drop_mask(module: nn.Module, leaf: str) -> bool:
    """Remove the mask buffer of `module.<leaf>` and its record; True if a buffer was there."""
    buffer = f"{leaf}{MASK_SUFFIX}"
    found = buffer in module._buffers
    if found:
        del module._buffers[buffer]
    masked = getattr(module, MASKED_MODULE_ATTR, {})
    masked.pop(leaf, None)
    if not masked and hasattr(module, MASKED_MODULE_ATTR):
        delattr(module, MASKED_MODULE_ATTR)
    return found


def masked_parameters(model: nn.Module) -> Iterable[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, weight, mask) for every parameter of `model` that carries a growprune mask; the
    weight is the parameter, or its dense form (a new tensor) when it is stored compactly."""
    for module_name, module in model.named_modules():
        for leaf, buffer in getattr(module, MASKED_MODULE_ATTR, {}).items():
            prefix = f"{module_name}." if module_name else ""
            weight = dense_weight(module) if is_compact(module) else getattr(module, leaf)
            yield f"{prefix}{leaf}", weight, getattr(module, buffer)
