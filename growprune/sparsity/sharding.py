"""Tensors of a model sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``).

FSDP2 turns each parameter into a DTensor: every rank holds one shard (rows of dim 0) and the
whole tensor exists only while a forward or backward all-gathers it. growprune keeps each mask
as a DTensor laid out as its parameter, so mask memory per rank falls with the world size, and
does every per-step pass (masking weights, gradients, optimizer state) on the local shards
alone. Choosing masks is the one place that needs whole layers: a layer's scores are gathered
(one layer at a time, as FSDP's forward gathers its weight), ranked exactly as in one process,
and each rank keeps its own rows of the result -- so the masks equal those of a one-process run
on the same weights, ties included. Gathering is a collective: every rank takes part, in the
same order, which a sparsifier's deterministic schedule guarantees.
"""

from __future__ import annotations

import sys

import torch

try:  # torch.distributed can be left out of a torch build
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, distribute_tensor
except ImportError:  # pragma: no cover - every supported torch build has it
    DTensor = None  # type: ignore[assignment,misc]


def is_sharded(tensor: object) -> bool:
    """True for a DTensor (a parameter of an FSDP2-sharded module, or a mask laid out as one)."""
    return DTensor is not None and isinstance(tensor, DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of `tensor` this rank holds -- the DTensor's own local tensor, so in-place writes
    reach the DTensor -- or `tensor` itself when it is not sharded. (``to_local()`` returns a
    new alias at every call, with a version counter of its own that neither writes through the
    DTensor nor change detection can use.)"""
    return tensor._local_tensor if is_sharded(tensor) else tensor


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of `tensor` as an ordinary tensor: gathered from every rank when sharded (a
    collective), `tensor` itself otherwise."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def local_part(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's part of `whole` (the same on every rank), laid out as the shard of `like`:
    cut locally, no communication. `whole` itself when `like` is not sharded."""
    if is_sharded(whole):
        return local(whole)
    if not is_sharded(like):
        return whole
    return distribute_tensor(whole, like.device_mesh, like.placements, src_data_rank=None).to_local()


def shard_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`whole` (the same on every rank) laid out as `like`: a DTensor holding this rank's part
    when `like` is sharded (cut locally, no communication), `whole` itself otherwise."""
    if not is_sharded(like):
        return whole
    return distribute_tensor(whole, like.device_mesh, like.placements, src_data_rank=None)


def count_nonzero(tensor: torch.Tensor) -> int:
    """Nonzero entries of the whole of `tensor` (summed over ranks when sharded: a collective)."""
    count = local(tensor).count_nonzero()
    if not is_sharded(tensor):
        return int(count)
    total = count.reshape(1).to(torch.int64)
    for mesh_dim, placement in enumerate(tensor.placements):  # summed over the dims that shard it
        if placement.is_shard():
            dist.all_reduce(total, group=tensor.device_mesh.get_group(mesh_dim))
    return int(total)


class ShardingError(ValueError):
    """A sharded model growprune cannot train as asked (the message names the fix)."""


def check_sharding(model: torch.nn.Module, params: dict[str, torch.Tensor], method: str, *,
                   supported: bool, storage: str) -> bool:  # fmt: skip
    """Refuse the sharded set-ups growprune does not train, in one line each; True when the
    pruned parameters (`params`, by name) are sharded with FSDP2."""
    fsdp1 = _fsdp1_class()
    for module in model.modules():
        if fsdp1 is not None and isinstance(module, fsdp1):
            raise ShardingError(
                "FullyShardedDataParallel (FSDP1) flattens parameters, which per-weight masks cannot "
                "follow; shard with FSDP2 instead (torch.distributed.fsdp.fully_shard) and build the "
                "sparsifier after it"
            )
    sharded = [name for name, param in params.items() if is_sharded(param)]
    if not sharded:
        return False
    if storage != "masked":
        raise ShardingError(
            f"'{sharded[0]}' is sharded (FSDP2): storage='{storage}' is not supported on sharded "
            "models yet; use storage='masked' (FSDP already splits each weight across ranks)"
        )
    if not supported:
        raise ShardingError(
            f"{method} does not run on FSDP2-sharded models yet ('{sharded[0]}' is sharded); "
            "train it without fully_shard, or use another method"
        )
    return True


def _fsdp1_class() -> type | None:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - every supported torch build has it
        return None
    return FullyShardedDataParallel


def inside_checkpoint_state_init(depth: int = 8) -> bool:
    """True when the optimizer step now running is torch.distributed.checkpoint's way of making
    optimizer state before loading into it (``set_state_dict`` / ``set_optimizer_state_dict``
    step once with zero gradients and lr 0): not a training step, so no schedule may count it."""
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "_init_optim_state" and "checkpoint" in code.co_filename:
            return True
        frame = frame.f_back
    return False


def replaced_parameter_error(name: str, now: object) -> ShardingError:
    """The error for a pruned parameter that is no longer the one the sparsifier was built on."""
    if is_sharded(now):
        return ShardingError(
            f"'{name}' was sharded (fully_shard) after the sparsifier was built, so its masks no "
            "longer reach the weight that trains; build the sparsifier after fully_shard(), from "
            "the sharded model and an optimizer over its parameters"
        )
    return ShardingError(
        f"'{name}' was replaced by a new parameter after the sparsifier was built (a wrapper, "
        "FSDP, or load_state_dict(assign=True)), so its masks no longer reach the weight that "
        "trains; build the sparsifier after the model is wrapped or loaded"
    )
