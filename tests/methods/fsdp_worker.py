"""One training run of a method on a small MLP, in one process or sharded with FSDP2 under
torchrun; writes what the FSDP tests compare (tests/methods/test_fsdp.py) to ``OUT.<rank>.json``.

Usage: ``python fsdp_worker.py METHOD OUT [--mode sharded|before|fsdp1|compact] [--steps N]``.
Modes: ``sharded`` (default) builds the sparsifier after ``fully_shard`` (the supported order);
``before`` builds it first and shards after; ``fsdp1`` wraps with FullyShardedDataParallel;
``compact`` asks for compact storage on the sharded model. An exception's message is written
as ``error`` (the tests check it is one line and names the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import growprune as gp
from growprune.sparsity.sharding import full, local

SCHEDULES: dict[str, dict[str, Any]] = {
    "cgap": {"partitions": 2, "steps_per_phase": 3, "rounds": 2, "finetune_steps": 2},
    "gmp": {"start_step": 1, "end_step": 8, "frequency": 2},
    "rigl": {"end_step": 10, "update_interval": 3},
    "set": {"end_step": 10, "update_interval": 3},
    "oneshot": {"prune_step": 3},
    "pgap": {"partitions": 2, "steps_per_phase": 3, "rounds": 2, "finetune_steps": 2},
    "admm": {"pretrain_steps": 1, "admm_steps": 6, "update_interval": 2},
}
STEPS = 14


def build() -> nn.Module:
    torch.manual_seed(0)
    # 7 output rows: FSDP2's shards of the last layer are uneven (4 and 3 rows)
    return nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 7))


def shard(model: nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("out")
    parser.add_argument("--mode", default="sharded", choices=["sharded", "before", "fsdp1", "compact"])
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    result: dict[str, Any] = {}
    try:
        result = run(args, world, rank)
    except Exception as error:  # noqa: BLE001 - the message is what the test checks
        result = {"error": str(error), "error_type": type(error).__name__}
    with open(f"{args.out}.{rank}.json", "w") as handle:
        json.dump(result, handle)
    if world > 1:
        dist.destroy_process_group()


def run(args: argparse.Namespace, world: int, rank: int) -> dict[str, Any]:
    model = build()
    kwargs = {"sparsity": 0.7, **SCHEDULES[args.method]}
    if args.mode == "compact":
        kwargs["storage"] = "compact"
    cls = gp.get_method(args.method)
    sparsifier = None
    if args.mode == "before":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        sparsifier = cls(model, optimizer, **kwargs)
    if world > 1 and args.mode == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        model = FullyShardedDataParallel(model, use_orig_params=True)
    elif world > 1:
        shard(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    if sparsifier is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sparsifier = cls(model, optimizer, **kwargs)
    generator = torch.Generator().manual_seed(1)
    for _ in range(args.steps):
        x = torch.randn(8, 12, generator=generator)
        y = torch.randint(0, 7, (8,), generator=generator)
        if world > 1:  # each rank its part of the batch: FSDP averages to the whole batch's gradient
            x, y = x.chunk(world)[rank], y.chunk(world)[rank]
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    masks = sparsifier.masks
    buffers = [sparsifier.mask_set.buffer(n) for n in sparsifier.names]
    report = gp.sparsity_report(model)
    exported = gp.export_model(model, f"{args.out}.safetensors")  # every rank; rank 0 writes
    return {
        "export": {"sparsity": exported.sparsity, "file_bytes": exported.file_bytes},
        "masks": {n: m.int().tolist() for n, m in masks.items()},
        "weights": {n: full(p.detach()).tolist() for n, p in model.named_parameters()},
        "report": {row.name: row.zeros for row in report.layers},
        "report_overall": report.overall,
        "local_mask_elements": sum(local(b).numel() for b in buffers),
        "mask_elements": sum(b.numel() for b in buffers),
        "sharded": sparsifier.sharded,
    }


if __name__ == "__main__":
    main()
