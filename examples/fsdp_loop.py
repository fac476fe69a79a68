"""Sparse training of an FSDP2-sharded model in your own loop: C-GaP over 2 ranks, with a resume.

    torchrun --standalone --nproc-per-node 2 examples/fsdp_loop.py

Each rank holds half of every weight and of every mask (``fully_shard``); the sparsifier is built
after sharding, from the sharded model and an optimizer over its parameters. Halfway through, the
run is saved (model and optimizer as full state dicts, the sparsifier's state), rebuilt from the
files and continued; it must end exactly where the uninterrupted run ends. gloo on CPU, NCCL on
GPUs. Exits non-zero if the model misses the target sparsity or the resume differs.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard

import growprune as gp

SPARSITY = 0.8
STEPS = 40
SCHEDULE = {"partitions": 3, "steps_per_phase": 4, "rounds": 2, "finetune_steps": 16}


def build() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)  # each layer its own group: gathered one at a time in forward
    fully_shard(model)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: range) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    for step in steps:
        generator = torch.Generator().manual_seed(step)  # the same global batch on every rank
        x = torch.randn(64, 32, generator=generator)
        y = (x[:, :10].argmax(1) + step % 2) % 10
        x, y = x.chunk(world)[rank], y.chunk(world)[rank]  # each rank its share
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def main() -> int:
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    # full state dicts: gathered to rank 0 to save, sent out from rank 0 to load
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full_from_rank0 = StateDictOptions(full_state_dict=True, cpu_offload=True, broadcast_from_rank0=True)

    model, optimizer = build()
    sparsifier = gp.CGaP(model, optimizer, sparsity=SPARSITY, **SCHEDULE)  # after fully_shard
    train(model, optimizer, range(STEPS))
    report = gp.sparsity_report(model)  # a collective: every rank asks, every rank gets the same
    masks = sparsifier.masks  # whole masks, gathered from the ranks' shards

    # The same run, saved halfway and resumed from the files.
    model, optimizer = build()
    sparsifier = gp.CGaP(model, optimizer, sparsity=SPARSITY, **SCHEDULE)
    train(model, optimizer, range(STEPS // 2))
    model_state, optimizer_state = get_state_dict(model, optimizer, options=full)  # whole on rank 0
    saved = {"model": model_state, "optimizer": optimizer_state, "sparsifier": sparsifier.state_dict()}
    path = os.path.join(tempfile.gettempdir(), f"fsdp_loop_{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}.pt")
    if rank == 0:
        torch.save(saved, path)  # the sparsifier's state holds whole masks, the same on every rank
    dist.barrier()
    del model, optimizer, sparsifier, saved

    model, optimizer = build()
    sparsifier = gp.CGaP(model, optimizer, sparsity=SPARSITY, **SCHEDULE)  # its masks are model buffers
    saved = torch.load(path, weights_only=False)
    dist.barrier()
    if rank == 0:
        os.remove(path)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=saved["model"],
        optim_state_dict=saved["optimizer"],
        options=full_from_rank0,
    )
    sparsifier.load_state_dict(saved["sparsifier"])  # before the first step: the run goes on
    train(model, optimizer, range(STEPS // 2, STEPS))
    resumed_masks = sparsifier.masks
    same_masks = all(torch.equal(masks[name], resumed_masks[name]) for name in masks)
    same_report = gp.sparsity_report(model).overall == report.overall

    if rank == 0:
        print(report)
        print(f"resumed run equals the uninterrupted one: masks {same_masks}, report {same_report}")
    ok = abs(report.overall - SPARSITY) < 0.01 and same_masks and same_report
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
