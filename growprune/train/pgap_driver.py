"""The P-GaP rounds: K workers train in parallel (torchrun) or one after another (one process).

Both modes do the same arithmetic in the same order -- every worker starts the round from the
merged model with fresh optimizer state, its RNG seeded by (seed, round, worker), and reads its
own data order seeded the same way -- so the single-process run is the reference the
multi-process run is tested against. Checkpoints are taken at merges, the only moments when all
workers hold the same model; a kill mid-round repeats that round on resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from growprune.methods.pgap import PGaP, merge_worker_states
from growprune.seeding import keyed_seed
from growprune.sparsity.consensus import verify_masks_equal
from growprune.tasks.base import Batch
from growprune.train.distributed import MergeStats, merge_across_groups

if TYPE_CHECKING:
    from growprune.train.engine import EpochStats, Trainer


def worker_batches(trainer: Trainer, round_index: int, worker: int) -> Iterator[Batch]:
    """The global batches worker `worker` trains on in round `round_index` (its own order)."""
    seed = keyed_seed(trainer.recipe.training.seed, "pgap-data", round_index, worker) % (1 << 62)
    loader = trainer.task.worker_loader(seed)
    epoch = 0
    while True:
        yield from loader.iter_from(epoch)
        epoch += 1


def _train_worker(
    trainer: Trainer, sparsifier: PGaP, round_index: int, worker: int, stats: EpochStats
) -> None:
    sparsifier.begin_round(round_index, worker)
    trainer.step = round_index * sparsifier.steps_per_phase
    trainer.log_steps = trainer.parallel_pgap or worker == 0
    trainer._after_mask_changes()
    torch.manual_seed(keyed_seed(trainer.recipe.training.seed, "pgap-rng", round_index, worker) % (1 << 62))
    trainer.model.train()
    batches = worker_batches(trainer, round_index, worker)
    for _ in range(sparsifier.steps_per_phase):
        stats.add(*trainer.train_step(next(batches)))
        if trainer._stop_signal is not None:
            from growprune.train.engine import Interrupted

            raise Interrupted(
                f"{trainer._stop_signal} in P-GaP round {round_index + 1}: the last checkpoint is the "
                "previous merge; continue with growprune train --resume {trainer.run_dir}"
            )


def _state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for k, t in state.items() if not k.endswith("_mask"))


def run_rounds(trainer: Trainer) -> None:
    """All P-GaP rounds from the last merged one; leaves the model merged and pruned for fine-tuning."""
    from growprune.train.engine import EpochStats

    sparsifier = trainer.sparsifier
    assert isinstance(sparsifier, PGaP)
    ctx = trainer.dist if trainer.parallel_pgap else None
    mode = sparsifier.merge_non_partition
    for round_index in range(sparsifier.merged_rounds, sparsifier.rounds):
        stats = EpochStats(trainer.device)
        if ctx is not None:
            _train_worker(trainer, sparsifier, round_index, ctx.group_index, stats)
            merge = merge_across_groups(trainer.model, sparsifier.partition_owner(), ctx, mode)
        else:
            start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            results = []
            for worker in range(sparsifier.num_partitions):
                trainer.model.load_state_dict(start)
                _train_worker(trainer, sparsifier, round_index, worker, stats)
                results.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
            began = time.monotonic()
            trainer.model.load_state_dict(merge_worker_states(results, sparsifier.partition_owner(), mode))
            merge = MergeStats(_state_bytes(start), 0.0, time.monotonic() - began)
        sparsifier.prune_after_merge()
        trainer._after_mask_changes()
        if trainer.dist is not None:
            verify_masks_equal(sparsifier.masks, None, f"the merge of round {round_index + 1}")
        trainer.log(
            {
                "type": "merge",
                "round": round_index + 1,
                "step": trainer.step,
                "bytes_exchanged": merge.bytes_exchanged,
                "wait_seconds": merge.wait_seconds,
                "merge_seconds": merge.merge_seconds,
            }
        )
        trainer.log_steps = True
        trainer.end_epoch(stats)
