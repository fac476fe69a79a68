"""C-GaP, cyclic scheduled grow-and-prune (Ma et al., ICLR 2022, Algorithm 1).

The prunable layers are split into K partitions. Partition 1 starts dense, the others at the
target sparsity. Each GaP step trains `steps_per_phase` optimizer steps; at its end the dense
partition is pruned back by magnitude and the next one is grown to fully dense (grown weights
restart at zero). After `rounds` x K GaP steps the last dense partition is pruned and the model
fine-tunes with fixed masks. Every weight is trained dense at some point, yet the model never
holds more than (1 - r) + r / K of its dense weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from growprune.methods.base import RESET_MODES, Phase, check_choice
from growprune.methods.gap import GaPSchedule, GaPSettings
from growprune.methods.settings import OfBudget, plural
from growprune.records import PhaseName


@dataclass(kw_only=True)
class CGaPSettings(GaPSettings):
    reset_optimizer: Literal["all", "changed"] = "all"


class CGaP(GaPSchedule):
    """Cyclic grow-and-prune: one partition dense at a time, in turn.

    `reset_optimizer="all"` forgets all optimizer state at every GaP step, as the authors' code
    does by building a new optimizer; `"changed"` only zeroes the state of the pruned entries.
    See :class:`GaPSchedule` for the shared arguments.
    """

    method = "cgap"
    title = "C-GaP"
    settings = CGaPSettings
    # Ma et al. 2022: K=4 contiguous partitions, optimizer state reset at every GaP step (the authors'
    # code), 2 rounds; the GaP steps take 2/3 of the run (2 rounds x K steps of 1/(3K) each),
    # fine-tuning 1/3 (the bundled recipe's 4 x 2 x 2 + 8 epochs of 24)
    paper_schedule = {
        "partitions": 4,
        "partition_mode": "contiguous",
        "rounds": 2,
        "epochs_per_phase": OfBudget(per=3, per_partition=True),
        "finetune_epochs": OfBudget(per=3),
        "reset_optimizer": "all",
    }

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        reset_optimizer: str = "all",
        **kwargs: Any,
    ) -> None:
        self.reset_optimizer = check_choice("reset_optimizer", reset_optimizer, RESET_MODES)
        super().__init__(model, optimizer, **kwargs)

    @staticmethod
    def phases_for(rounds: int, partitions: int) -> int:
        return rounds * partitions

    @staticmethod
    def describe_phases(rounds: int, partitions: int) -> str:
        return f"{rounds * partitions} GaP phases ({plural(rounds, 'round')} x {partitions} partitions)"

    def on_start(self) -> None:
        sparse = [n for part in self.partitions[1:] for n in part]
        if sparse:
            self.change_masks(self.initial_masks(sparse), "init")

    def dense_partition_at(self, step: int) -> int | None:
        """0-based index of the dense partition after `step` optimizer steps, None after GaP."""
        phase = step // self.steps_per_phase
        return phase % self.num_partitions if phase < self.phases else None

    def on_step(self, step: int) -> None:
        if step % self.steps_per_phase or step > self.gap_end:
            return
        finished = step // self.steps_per_phase - 1
        new_masks = self.prune_partitions([self.partitions[finished % self.num_partitions]])
        grown = self.dense_partition_at(step)
        if grown is not None:
            for name in self.partitions[grown]:
                new_masks[name] = self.keep_all(name)
        event = "prune-grow" if grown is not None else "final-prune"
        self.change_masks(new_masks, event, self.reset_optimizer)

    def describe_phase(self, step: int) -> Phase:
        dense = self.dense_partition_at(step)
        if dense is None:
            return self.after_gap_phase(step)
        return Phase(
            PhaseName.GAP,
            step,
            round=step // self.steps_per_phase // self.num_partitions + 1,
            rounds=self.rounds,
            dense_partition=dense + 1,
            partitions=self.num_partitions,
        )
