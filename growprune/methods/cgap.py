"""C-GaP, cyclic scheduled grow-and-prune (Ma et al., ICLR 2022, Algorithm 1).

The prunable layers are split into K partitions. Partition 1 starts dense, the others at the
target sparsity. Each GaP step trains `steps_per_phase` optimizer steps; at its end the dense
partition is pruned back by magnitude and the next one is grown to fully dense (grown weights
restart at zero). After `rounds` x K GaP steps the last dense partition is pruned and the model
fine-tunes with fixed masks. Every weight is trained dense at some point, yet the model never
holds more than (1 - r) + r / K of its dense weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from growprune.methods.base import (
    INIT_MODES,
    RESET_MODES,
    Phase,
    Sparsifier,
    check_choice,
    check_steps,
)
from growprune.sparsity.partition import PARTITION_MODES, PartitionSpec


class CGaP(Sparsifier):
    """Cyclic grow-and-prune.

    `partitions` is K (split by `partition_mode`: balanced `contiguous` runs or seeded
    `random`) or a list of name-pattern groups. `reset_optimizer="all"` forgets all optimizer
    state at every GaP step, as the authors' code does by building a new optimizer;
    `"changed"` only zeroes the state of the pruned entries. `init` chooses the first sparse
    masks: `random` (the paper) or `magnitude`.
    """

    method = "cgap"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        partitions: PartitionSpec = 4,
        steps_per_phase: int,
        rounds: int = 1,
        finetune_steps: int = 0,
        partition_mode: str = "contiguous",
        reset_optimizer: str = "all",
        init: str = "random",
        **kwargs: Any,
    ) -> None:
        self.steps_per_phase = check_steps("steps_per_phase", steps_per_phase, minimum=1)
        self.rounds = check_steps("rounds", rounds, minimum=1)
        self.finetune_steps = check_steps("finetune_steps", finetune_steps)
        self.partition_mode = check_choice("partition_mode", partition_mode, PARTITION_MODES)
        self.reset_optimizer = check_choice("reset_optimizer", reset_optimizer, RESET_MODES)
        self.init = check_choice("init", init, INIT_MODES)
        self._partition_spec = partitions
        super().__init__(model, optimizer, **kwargs)

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def gap_steps(self) -> int:
        """Number of GaP steps (rounds x K)."""
        return self.rounds * self.num_partitions

    @property
    def total_steps(self) -> int:
        return self.gap_steps * self.steps_per_phase + self.finetune_steps

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "partitions": self.partitions,
            "steps_per_phase": self.steps_per_phase,
            "rounds": self.rounds,
            "finetune_steps": self.finetune_steps,
            "reset_optimizer": self.reset_optimizer,
            "init": self.init,
        }

    def on_start(self) -> None:
        self.partitions = self.resolve_partitions(self._partition_spec, self.partition_mode)
        sparse = [n for part in self.partitions[1:] for n in part]
        if sparse:
            if self.init == "random":
                scores = self.random_scores(sparse, "init")
            else:
                scores = self.magnitude_scores(sparse)
            self.change_masks(self.compute_masks(sparse, scores), "init")

    def dense_partition_at(self, step: int) -> int | None:
        """0-based index of the dense partition after `step` optimizer steps, None after GaP."""
        gap_step = step // self.steps_per_phase
        return gap_step % self.num_partitions if gap_step < self.gap_steps else None

    def on_step(self, step: int) -> None:
        if step % self.steps_per_phase or step > self.gap_steps * self.steps_per_phase:
            return
        finished = step // self.steps_per_phase - 1
        pruned = self.partitions[finished % self.num_partitions]
        new_masks = self.compute_masks(pruned, self.magnitude_scores(pruned))
        grown = self.dense_partition_at(step)
        if grown is not None:
            for name in self.partitions[grown]:
                new_masks[name] = torch.ones_like(self.mask_set.mask(name))
        self.change_masks(
            new_masks, "prune-grow" if grown is not None else "final-prune", self.reset_optimizer
        )

    def describe_phase(self, step: int) -> Phase:
        dense = self.dense_partition_at(step)
        if dense is not None:
            return Phase(
                "gap",
                step,
                round=step // self.steps_per_phase // self.num_partitions + 1,
                rounds=self.rounds,
                dense_partition=dense + 1,
                partitions=self.num_partitions,
            )
        gap_end = self.gap_steps * self.steps_per_phase
        return Phase("finetune" if step < gap_end + self.finetune_steps else "done", step)
