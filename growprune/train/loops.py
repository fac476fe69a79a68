"""How the trainer walks a method's schedule: step after step, or in rounds of merged workers.

The method picks its loop by name (``Sparsifier.loop``), so the trainer never asks which method
it runs. A loop drives the trainer only through the public API of :class:`LoopHost` (one
optimizer step, the end of an epoch, checkpointing, logging, the stop request), and the trainer
imports this module, never the reverse.

Rounds (of P-GaP, or of any :class:`~growprune.methods.rounds.RoundsMethod`): K workers train in
parallel (torchrun, one partition group each) or one after another (one process). Both modes do
the same arithmetic in the same order -- every worker starts the round from the merged model with
fresh optimizer state, its RNG seeded by (seed, method, round, worker), and reads its own data
order seeded the same way -- so the single-process run is the reference the multi-process run is
tested against. Checkpoints are taken at merges, the only moments when all workers hold the same
model; a kill mid-round repeats that round on resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from growprune.errors import InterruptedRun
from growprune.methods import Sparsifier
from growprune.methods.rounds import EXTERNAL_MERGE, RoundsMethod, merge_worker_states
from growprune.records import MergeRecord, Record
from growprune.seeding import keyed_seed
from growprune.sparsity.consensus import verify_masks_equal
from growprune.tasks.base import Batch, Task
from growprune.train.distributed import DistContext, MergeStats, make_partition_groups, merge_across_groups


class Interrupted(InterruptedRun, RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was written and the run can be resumed."""


class EpochStats:
    """Running training loss and accuracy, kept on the device to avoid a sync per step."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        """One batch: its mean loss, correct predictions (items or tokens) and predictions made."""
        self.loss += loss * count
        self.correct += correct
        self.seen += count

    def state(self) -> dict[str, Any]:
        """The sums so far, for a checkpoint taken mid-epoch (a resumed epoch reports all its batches)."""
        return {
            "loss": self.loss.detach().cpu().clone(),
            "correct": self.correct.cpu().clone(),
            "seen": self.seen,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.loss = state["loss"].to(self.loss.device)
        self.correct = state["correct"].to(self.correct.device)
        self.seen = int(state["seen"])

    def summary(self) -> dict[str, float]:
        seen = max(self.seen, 1)
        return {"train_loss": float(self.loss) / seen, "train_acc": float(self.correct) / seen}


@dataclass(frozen=True)
class DataParallel:
    """This rank's data-parallel group: who shares its batches and its masks."""

    group: Any = None
    size: int = 1
    rank: int = 0


class LoopHost(Protocol):
    """What a loop may use of the trainer: its public API."""

    model: nn.Module
    task: Task
    sparsifier: Sparsifier
    device: torch.device
    seed: int
    run_dir: Path
    dist: DistContext | None
    step: int
    epoch: int
    batch: int
    total_steps: int
    steps_per_epoch: int
    log_steps: bool
    stop_signal: str | None
    epoch_open: bool

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]: ...
    def epoch_stats(self) -> EpochStats: ...
    def end_epoch(self, stats: EpochStats) -> None: ...
    def after_mask_changes(self) -> None: ...
    def save_checkpoint(self) -> Path | None: ...
    def checkpoint_due(self) -> bool: ...
    def log(self, record: Record) -> None: ...


class StepLoop:
    """Epoch after epoch on the task's training order until the schedule's last step."""

    # Constructor arguments the loop needs the sparsifier built with.
    sparsifier_arguments: ClassVar[dict[str, Any]] = {}

    def __init__(self, host: LoopHost) -> None:
        self.host = host

    def data_parallel(self, ctx: DistContext | None) -> DataParallel:
        """Under torchrun every rank trains one replica on its share of each batch."""
        return DataParallel() if ctx is None else DataParallel(None, ctx.world, ctx.rank)

    def planned_steps(self) -> int:
        """Optimizer steps this process runs."""
        return self.host.total_steps

    def run(self) -> None:
        host = self.host
        # A run resumed from a checkpoint taken after an epoch's (or the run's) last step, before
        # that epoch ended, ends the epoch first: evaluation, record and checkpoint, as it would have.
        while host.step < host.total_steps or host.epoch_open:
            self.train_epoch()

    def train_epoch(self) -> None:
        host = self.host
        host.model.train()
        stats = host.epoch_stats()
        start = host.batch if host.step < host.total_steps else host.steps_per_epoch
        for batch in host.task.train_loader.iter_from(host.epoch, start):
            stats.add(*host.train_step(batch))
            host.batch += 1
            if host.stop_signal is not None:
                path = host.save_checkpoint()
                raise Interrupted(
                    f"{host.stop_signal} at step {host.step}: checkpoint {path or 'on rank 0'} written; "
                    f"continue with growprune train --resume {host.run_dir}"
                )
            if host.step >= host.total_steps:
                break
            if host.checkpoint_due():
                host.save_checkpoint()
        if host.batch >= host.steps_per_epoch:
            host.epoch, host.batch = host.epoch + 1, 0
        host.end_epoch(stats)


class RoundLoop(StepLoop):
    """A :class:`RoundsMethod` (P-GaP): the rounds from the last merged one, then fine-tuning as a
    :class:`StepLoop`. It asks the method only what :class:`RoundsMethod` declares."""

    # The loop merges the workers' states itself at the end of every round.
    sparsifier_arguments: ClassVar[dict[str, Any]] = {"merger": EXTERNAL_MERGE}

    def __init__(self, host: LoopHost) -> None:
        super().__init__(host)
        if not isinstance(host.sparsifier, RoundsMethod):
            raise TypeError(
                f"the rounds loop runs a growprune.methods.RoundsMethod, not {type(host.sparsifier).__name__}"
            )
        self.sparsifier: RoundsMethod = host.sparsifier
        self.parallel = False

    def data_parallel(self, ctx: DistContext | None) -> DataParallel:
        """Under torchrun the world splits into K partition groups; each is one data-parallel replica."""
        if ctx is None:
            return DataParallel()
        make_partition_groups(ctx, self.sparsifier.num_workers, self.sparsifier.title)
        self.parallel = True
        self.sparsifier.worker = ctx.group_index
        return DataParallel(ctx.group_pg, ctx.group_size, ctx.rank_in_group)

    def planned_steps(self) -> int:
        """One process trains its K workers in turn: every round's steps K times."""
        if self.parallel:
            return self.host.total_steps
        return self.host.total_steps + (self.sparsifier.num_workers - 1) * self.sparsifier.rounds_end

    def run(self) -> None:
        self.run_rounds()
        super().run()

    def worker_batches(self, round_index: int, worker: int) -> Iterator[Batch]:
        """The global batches `worker` trains on in round `round_index` (its own order, keyed by
        the method's name so that two rounds methods do not share data orders)."""
        seed = keyed_seed(self.host.seed, f"{self.sparsifier.method}-data", round_index, worker) % (1 << 62)
        loader = self.host.task.worker_loader(seed)
        epoch = 0
        while True:
            yield from loader.iter_from(epoch)
            epoch += 1

    def train_worker(self, round_index: int, worker: int, stats: EpochStats) -> None:
        host, sparsifier = self.host, self.sparsifier
        sparsifier.begin_round(round_index, worker)
        host.step = round_index * sparsifier.steps_per_round
        host.log_steps = self.parallel or worker == 0
        host.after_mask_changes()
        torch.manual_seed(keyed_seed(host.seed, f"{sparsifier.method}-rng", round_index, worker) % (1 << 62))
        host.model.train()
        batches = self.worker_batches(round_index, worker)
        for _ in range(sparsifier.steps_per_round):
            stats.add(*host.train_step(next(batches)))
            if host.stop_signal is not None:
                raise Interrupted(
                    f"{host.stop_signal} in {sparsifier.title} round {round_index + 1}: the last checkpoint "
                    f"is the previous merge; continue with growprune train --resume {host.run_dir}"
                )

    def run_rounds(self) -> None:
        """All rounds from the last merged one; leaves the model merged and pruned for fine-tuning."""
        host, sparsifier = self.host, self.sparsifier
        mode = sparsifier.merge_non_partition
        for round_index in range(sparsifier.merged_rounds, sparsifier.rounds):
            stats = host.epoch_stats()
            if self.parallel:
                assert host.dist is not None
                self.train_worker(round_index, host.dist.group_index, stats)
                merge = merge_across_groups(host.model, sparsifier.partition_owner(), host.dist, mode)
            else:
                merge = self.train_workers_in_turn(round_index, stats)
            sparsifier.prune_after_merge()
            host.after_mask_changes()
            if host.dist is not None:
                verify_masks_equal(sparsifier.masks, None, f"the merge of round {round_index + 1}")
            host.log(
                MergeRecord(
                    round=round_index + 1,
                    step=host.step,
                    bytes_exchanged=merge.bytes_exchanged,
                    wait_seconds=merge.wait_seconds,
                    merge_seconds=merge.merge_seconds,
                )
            )
            host.log_steps = True
            host.end_epoch(stats)

    def train_workers_in_turn(self, round_index: int, stats: EpochStats) -> MergeStats:
        """One process plays the K workers one after another, then merges their states."""
        model = self.host.model
        start = {k: v.clone() for k, v in model.state_dict().items()}
        results = []
        for worker in range(self.sparsifier.num_workers):
            model.load_state_dict(start)
            self.train_worker(round_index, worker, stats)
            results.append({k: v.clone() for k, v in model.state_dict().items()})
        began = time.monotonic()
        owner = self.sparsifier.partition_owner()
        model.load_state_dict(merge_worker_states(results, owner, self.sparsifier.merge_non_partition))
        return MergeStats(_state_bytes(start), 0.0, time.monotonic() - began)


def _state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for k, t in state.items() if not k.endswith("_mask"))


LOOPS: dict[str, type[StepLoop]] = {"steps": StepLoop, "rounds": RoundLoop}


def loop_class(method: type[Sparsifier]) -> type[StepLoop]:
    """The loop a method asks for (``Sparsifier.loop``)."""
    if method.loop not in LOOPS:
        raise ValueError(
            f"method '{method.method}' asks for the training loop '{method.loop}', which growprune's "
            f"trainer does not have ({', '.join(LOOPS)}); train it in your own loop"
        )
    return LOOPS[method.loop]
