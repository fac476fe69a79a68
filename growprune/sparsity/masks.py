"""Masks: boolean module buffers, applied to weights and gradients in batched kernels.

Each mask is a bool buffer registered next to its parameter (``fc.weight`` -> ``fc.weight_mask``)
so it travels with ``model.state_dict()`` and ``model.to(...)`` like any other buffer.

Applying a bool mask with ``torch._foreach_mul_`` is about 4x slower than applying a mask of the
parameter's own dtype (it promotes per element), so a same-dtype copy is cached and rebuilt only
when a mask changes (tracked by the buffer's version counter and identity) or the parameter
moves. Layers whose mask keeps everything are left out of the batched calls entirely: in C-GaP
that is the whole dense partition.

In compact storage a mask would repeat what the layer's storage already says (a compact layer
keeps exactly its positions, a dense one keeps everything), at 1 byte per weight: 64 MiB of a
67M-weight model, more than C-GaP's 90% target had to spare. Such a layer's buffer is *held by
its storage*: an empty placeholder in the module, the mask made from the storage when read
(:meth:`MaskSet.mask`, ``model.state_dict()``, :func:`masked_parameters`), and a real buffer put
back before anything is loaded into it or when its layer leaves compact storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from growprune.sparsity.compact import compact_state, dense_shape, dense_weight, is_compact, mask_of
from growprune.sparsity.sharding import count_nonzero, full, local, local_part
from growprune.sparsity.targets import Target

MASK_SUFFIX = "_mask"
LayerKey = tuple[tuple[int, ...], torch.dtype, torch.device]  # mask stamp, param dtype and device
MASKED_MODULE_ATTR = "_growprune_masked"  # module attribute: {leaf: buffer name}


def tensor_stamp(tensor: torch.Tensor) -> tuple[int, ...]:
    """Identity, version counter and storage of a tensor: any in-place write (``copy_``,
    ``load_state_dict``, an optimizer step, GradScaler's unscale), a new tensor in its place or a
    swapped ``.data`` changes it. How growprune notices changes it did not make. A sharded
    tensor (FSDP2) is stamped by its own version (writes through the DTensor: an optimizer step,
    ``load_state_dict``) and by the shard this rank holds (writes to the shard itself)."""
    part = local(tensor)
    if part is tensor:
        return (id(tensor), tensor._version, tensor.data_ptr())
    return (id(tensor), tensor._version, part._version, part.data_ptr())


def _is_placeholder(buffer: torch.Tensor, module: nn.Module, leaf: str) -> bool:
    """An empty mask buffer for a weight that is not empty: the layer's storage holds the mask."""
    return buffer.numel() == 0 and math.prod(dense_shape(module, leaf)) > 0


def stored_mask(module: nn.Module, leaf: str, buffer: str) -> torch.Tensor | None:
    """The mask of ``module.<leaf>`` kept in ``module.<buffer>``, whole (a new tensor when its
    storage holds it: the compact layer's positions, or all True for a dense layer); None if the
    module has no such buffer."""
    mask = module._buffers.get(buffer)
    if mask is None:
        return None
    if not _is_placeholder(mask, module, leaf):
        return full(mask)
    state = compact_state(module)
    if state is not None and state.leaf == leaf:
        return mask_of(state.positions(module), state.shape)
    return torch.ones(getattr(module, leaf).shape, dtype=torch.bool, device=mask.device)


def _masks_in_state_dict(module: nn.Module, destination: dict, prefix: str, _meta: object) -> None:
    """``state_dict()`` shows every mask whole, held by its storage or not: files keep their format."""
    for leaf, buffer in getattr(module, MASKED_MODULE_ATTR, {}).items():
        key = prefix + buffer
        if key in destination and _is_placeholder(destination[key], module, leaf):
            destination[key] = stored_mask(module, leaf, buffer)


def _masks_before_load(module: nn.Module, state_dict: Mapping, prefix: str, *_: object) -> None:
    """A mask held by its storage becomes a real buffer again before ``load_state_dict`` writes
    into the layer: torch copies a loaded mask into it, and a loaded weight may move a compact
    layer's positions away from its mask (until the sparsifier trims it at its next step)."""
    del state_dict, prefix
    for leaf, buffer in getattr(module, MASKED_MODULE_ATTR, {}).items():
        current = module._buffers.get(buffer)
        if current is not None and _is_placeholder(current, module, leaf):
            module._buffers[buffer] = stored_mask(module, leaf, buffer)


class MaskSet:
    """The masks of a set of targets, and the cheap operations done with them every step."""

    def __init__(self, targets: Sequence[Target], persistent: bool = True, held: Iterable[str] = ()) -> None:
        """`held`: targets whose storage holds their mask from the start (dense ones in compact
        storage, see :meth:`hold`); the others get an all-True bool buffer."""
        self.targets = list(targets)
        self.by_name = {t.name: t for t in self.targets}
        self._cache_key: list[LayerKey] | None = None
        self._active: tuple[list[nn.Parameter], list[torch.Tensor]] = ([], [])
        self._active_names: list[str] = []
        # The same cached masks by layer (None: keeps everything), with the key each was built
        # for, so one gradient can be masked as it is accumulated without rebuilding the lists;
        # and the stamp of each gradient right after it was masked: a gradient
        # still carrying that stamp needs no second pass before the optimizer step.
        self._layer_masks: dict[str, tuple[LayerKey, torch.Tensor | None]] = {}
        self._grad_stamps: dict[str, tuple[int, ...]] = {}
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
        held = set(held)
        self._module_hooks: list[torch.utils.hooks.RemovableHandle] = []
        for target in self.targets:
            buffer = f"{target.leaf}{MASK_SUFFIX}"
            if target.name in held:
                mask = torch.empty(0, dtype=torch.bool, device=target.param.device)
            else:
                # laid out as the parameter: a sharded one (FSDP2) gets a mask sharded the same way
                mask = torch.ones_like(target.param, dtype=torch.bool)
            target.module.register_buffer(buffer, mask, persistent=persistent)
            masked = getattr(target.module, MASKED_MODULE_ATTR, {})
            if not masked:  # once per module: the hooks serve every mask of the module
                self._module_hooks += [
                    target.module.register_state_dict_post_hook(_masks_in_state_dict),
                    target.module.register_load_state_dict_pre_hook(_masks_before_load),
                ]
            masked[target.leaf] = buffer
            setattr(target.module, MASKED_MODULE_ATTR, masked)

    # -- access -----------------------------------------------------------------------------
    def buffer(self, name: str) -> torch.Tensor:
        """The mask buffer of target `name` as stored: sharded as its parameter under FSDP2, empty
        when its storage holds it (:meth:`is_held`)."""
        target = self.by_name[name]
        return getattr(target.module, f"{target.leaf}{MASK_SUFFIX}")

    def _put(self, name: str, buffer: torch.Tensor) -> None:
        """Another tensor as target `name`'s mask buffer (persistent or not, as registered)."""
        target = self.by_name[name]
        target.module._buffers[f"{target.leaf}{MASK_SUFFIX}"] = buffer

    def is_held(self, name: str) -> bool:
        """True when the storage of target `name` holds its mask (see :meth:`hold`)."""
        target = self.by_name[name]
        return _is_placeholder(self.buffer(name), target.module, target.leaf)

    def mask(self, name: str) -> torch.Tensor:
        """The whole mask of target `name`: the buffer itself, gathered from every rank when
        sharded (a collective: under FSDP2 every rank must read it), or made from the layer's
        storage when that holds it (a new tensor)."""
        target = self.by_name[name]
        mask = stored_mask(target.module, target.leaf, f"{target.leaf}{MASK_SUFFIX}")
        assert mask is not None  # registered by __init__
        return mask

    def hold(self, name: str) -> None:
        """Let the storage of target `name` hold its mask: the buffer becomes an empty placeholder.
        Only for a layer whose storage says its mask exactly: compact with the mask's positions,
        or dense with a mask that keeps everything (the sparsifier's compact storage)."""
        self._put(name, self.buffer(name).new_empty(0))

    def release(self, name: str) -> None:
        """A real buffer again for a mask its storage held (before that storage changes)."""
        if self.is_held(name):
            self._put(name, self.mask(name))

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {t.name: self.mask(t.name) for t in self.targets}

    def set(self, name: str, mask: torch.Tensor) -> None:
        """Replace one mask in place (same buffer object, so references stay valid); a sharded
        buffer takes this rank's part of a whole mask."""
        target = self.by_name[name]
        current = self.buffer(name)
        if mask.shape != target.shape:
            raise ValueError(
                f"mask for '{name}' has shape {tuple(mask.shape)}, expected {tuple(target.shape)}"
            )
        if self.is_held(name):  # a real buffer again, the storage to follow (the sparsifier's fit)
            real = mask.to(device=current.device, dtype=torch.bool)
            self._put(name, real.clone() if real is mask else real)
            return
        part = local(current)
        part.copy_(local_part(mask, current).to(device=part.device, dtype=torch.bool))

    def update(self, masks: Mapping[str, torch.Tensor]) -> None:
        for name, mask in masks.items():
            self.set(name, mask)

    def kept(self, name: str) -> int:
        if self.is_held(name):
            target = self.by_name[name]
            state = compact_state(target.module)
            return state.positions(target.module).numel() if state is not None else target.param.numel()
        return count_nonzero(self.buffer(name))  # a bool .sum() would copy the mask to int64

    def set_compact(self, names: frozenset[str]) -> None:
        """Which layers are stored compactly now (the cached lists are rebuilt)."""
        if names != self.compact:
            self.compact = names
            self._cache_key = None

    # -- per-step work ----------------------------------------------------------------------
    def _active_lists(self) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
        """Parameters with a non-trivial mask and their masks in the parameter's dtype: the
        shards this rank holds, for a model sharded with FSDP2 (every pass here is per entry)."""
        buffers = [self.buffer(t.name) for t in self.targets]
        masks = [local(b) for b in buffers]
        params = [local(t.param) for t in self.targets]
        key = [(tensor_stamp(b), p.dtype, p.device) for b, p in zip(buffers, params)]
        if key != self._cache_key:
            # a shard that keeps everything needs no pass on this rank (no collective here: this
            # also runs inside gradient hooks)
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

    def weight_stamp(self) -> list[tuple[int, ...]]:
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
        grad_part = local(grad)
        key = (tensor_stamp(self.buffer(name)), local(param).dtype, local(param).device)
        cached = self._layer_masks.get(name)
        if cached is None or cached[0] != key:
            self._active_lists()  # a mask changed: rebuild the shared cache
            cached = self._layer_masks[name]
        if cached[1] is not None:
            grad_part.mul_(cached[1])
            self._grad_stamps[name] = tensor_stamp(grad)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        """Mask every gradient not already masked since it last changed (manual gradients,
        in-place rescaling by GradScaler or clipping, data-parallel write-backs)."""
        _, masks = self._active_lists()
        stamps = self._grad_stamps
        pairs = []
        for name, m in zip(self._active_names, masks):
            grad = self.by_name[name].param.grad  # the parameter's (a sharded one's grad is sharded too)
            if grad is None:
                continue
            if grad.layout != torch.strided:
                raise ValueError(
                    "growprune cannot mask sparse gradients; use dense gradients for pruned layers"
                )
            if stamps.get(name) != tensor_stamp(grad):
                pairs.append((local(grad), m))
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])
        stamps.clear()

    def masked_pairs(self, names: Iterable[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, mask buffer) of the layers among `names` whose weights a mask multiplies:
        neither compact nor holding their mask in storage (a dense layer then keeps everything)."""
        kept = [n for n in names if n not in self.compact and not self.is_held(n)]
        return [(self.by_name[n].param, self.buffer(n)) for n in kept]

    def remove(self) -> None:
        """Drop the mask buffers from the model (weights keep their zeros)."""
        for hook in self._module_hooks:
            hook.remove()
        self._module_hooks = []
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
            weight = dense_weight(module) if is_compact(module) else full(getattr(module, leaf))
            mask = stored_mask(module, leaf, buffer)
            assert mask is not None
            yield f"{prefix}{leaf}", weight, mask
