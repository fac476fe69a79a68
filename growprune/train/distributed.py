"""torch.distributed plumbing: process groups, data sharding, mask agreement, the rounds merge.

Launch with ``torchrun``; everything is read from its environment variables. gloo is used on
CPU and NCCL on CUDA. For a rounds method (P-GaP) with K partitions and N = K x M processes, ranks
[k*M, (k+1)*M) form group k: they train one replica with data parallelism and grow partition k.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from growprune.methods.rounds import entry_owners


@dataclass
class DistContext:
    """This process's place in the job."""

    rank: int
    world: int
    local_rank: int
    backend: str
    groups: int = 1  # a rounds method's partition groups (1 for data parallelism over all ranks)
    group_pgs: list[Any] = field(default_factory=list)

    @property
    def group_size(self) -> int:
        return self.world // self.groups

    @property
    def group_index(self) -> int:
        return self.rank // self.group_size

    @property
    def rank_in_group(self) -> int:
        return self.rank % self.group_size

    @property
    def group_pg(self) -> Any:
        return self.group_pgs[self.group_index] if self.group_pgs else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def shard_model(model: nn.Module) -> None:
    """FSDP2 over every rank (``training.parallel: fsdp``), one group for the whole model: its
    parameters, gradients, optimizer state and masks are sharded at rest (each rank its rows),
    and the whole model is gathered for each forward and for each backward. Groups per block
    would gather less at a time, but only for models whose blocks are entered through their own
    forward alone; growprune's Transformer computes the decoder's cross-attention keys outside
    its decoder blocks, and tied weights cross blocks, so the engine does not assume it."""
    from torch.distributed.fsdp import fully_shard

    fully_shard(model)


def launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> DistContext | None:
    """Join the job started by torchrun; None when running as a single process."""
    if not launched_distributed():
        return None
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(backend, store=_attempt_store(rank, world), rank=rank, world_size=world)
    return DistContext(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), backend
    )


def _attempt_store(rank: int, world: int) -> dist.Store:
    """The rendezvous store, with keys private to this restart attempt.

    After an elastic restart torchrun's agent store still holds the previous attempt's keys; a
    new rank that reads a dead peer's gloo address from them fails with "connection refused".
    Prefixing every key with the restart count makes each attempt meet only its own ranks.
    """
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent_store and rank == 0,
        multi_tenant=not agent_store,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"growprune/attempt_{attempt}", store)


def make_partition_groups(ctx: DistContext, partitions: int, method_title: str) -> None:
    """Split the world into `partitions` groups of equal size (every rank must call this);
    `method_title` names the method in the error a world of another size gets."""
    if ctx.world % partitions:
        raise ValueError(
            f"{method_title} with {partitions} partitions needs a multiple of {partitions} processes, got "
            f"{ctx.world}; use torchrun --nproc-per-node {partitions} (or a multiple), or run without "
            "torchrun to train the workers one after another"
        )
    ctx.groups = partitions
    size = ctx.world // partitions
    ctx.group_pgs = [dist.new_group(list(range(k * size, (k + 1) * size))) for k in range(partitions)]


def shard_batch(
    x: torch.Tensor, y: torch.Tensor, index: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous share of a global batch (global batch size divisible by `count`)."""
    size = x.shape[0] // count
    return x[index * size : (index + 1) * size], y[index * size : (index + 1) * size]


@dataclass
class MergeStats:
    bytes_exchanged: int
    wait_seconds: float
    merge_seconds: float


@torch.no_grad()
def merge_across_groups(model: nn.Module, owner: dict[str, int], ctx: DistContext, mode: str) -> MergeStats:
    """The rounds merge (P-GaP's) over torch.distributed: ``merge_worker_states`` over the groups.

    Partition k's weights are broadcast from group k's leader; other floating-point entries are
    averaged over all ranks, broadcast from rank 0 (``group0``), or with ``owner`` broadcast from
    the leader of the group that owns their layer (:func:`entry_owners`). Weights are equal
    inside a group (DDP); BatchNorm running statistics are not (DDP here does not broadcast
    buffers), so for them the average is over every rank, and the broadcasts carry the leader's.
    Masks are skipped: the prune that follows recomputes them. Bytes are counted as the payload
    each rank sends or receives once.
    """
    started = time.monotonic()
    dist.barrier()
    waited = time.monotonic() - started
    sent = 0
    state = model.state_dict()
    follows = entry_owners(list(state), owner) if mode == "owner" else {}
    for key, tensor in state.items():
        if key.endswith("_mask"):
            continue
        if key in owner:
            dist.broadcast(tensor, src=owner[key] * ctx.group_size)
        elif key in follows and tensor.is_floating_point():
            dist.broadcast(tensor, src=follows[key] * ctx.group_size)
        elif mode in ("average", "owner") and tensor.is_floating_point():
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(ctx.world)
        else:
            dist.broadcast(tensor, src=0)
        sent += tensor.numel() * tensor.element_size()
    return MergeStats(sent, waited, time.monotonic() - started - waited)


def dense_allreduce_bytes(model: nn.Module) -> int:
    """Bytes one DDP step all-reduces: every gradient, dense."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
