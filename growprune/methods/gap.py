"""What C-GaP and P-GaP share: partitions, phase length, rounds, fine-tuning, initial masks.

The two differ only in who grows which partition when (one at a time in turn, or one per worker
in parallel) and in what happens at the end of a phase (prune-and-grow, or merge-and-prune).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from growprune.methods.base import INIT_MODES, Phase, Sparsifier, check_choice, check_steps
from growprune.sparsity.partition import PARTITION_MODES, PartitionSpec


class GaPSchedule(Sparsifier):
    """Base of the scheduled grow-and-prune methods.

    `partitions` is K (split by `partition_mode`: balanced `contiguous` runs or seeded
    `random`) or a list of name-pattern groups. `init` chooses the first sparse masks: `random`
    (the paper) or `magnitude`. Subclasses say how many phases of `steps_per_phase` one process
    trains before the final prune (`phases`).
    """

    regrows = True

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
        init: str = "random",
        **kwargs: Any,
    ) -> None:
        self.steps_per_phase = check_steps("steps_per_phase", steps_per_phase, minimum=1)
        self.rounds = check_steps("rounds", rounds, minimum=1)
        self.finetune_steps = check_steps("finetune_steps", finetune_steps)
        self.partition_mode = check_choice("partition_mode", partition_mode, PARTITION_MODES)
        self.init = check_choice("init", init, INIT_MODES)
        self._partition_spec = partitions
        super().__init__(model, optimizer, **kwargs)

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def gap_steps(self) -> int:
        """GaP steps as the paper counts them: rounds x K (for P-GaP, K of them run in parallel)."""
        return self.rounds * self.num_partitions

    @property
    def phases(self) -> int:
        """Phases one process trains before the final prune."""
        raise NotImplementedError

    @property
    def gap_end(self) -> int:
        """Optimizer step at which the last phase ends and fine-tuning begins."""
        return self.phases * self.steps_per_phase

    @property
    def total_steps(self) -> int:
        return self.gap_end + self.finetune_steps

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "partitions": self.partitions,
            "steps_per_phase": self.steps_per_phase,
            "rounds": self.rounds,
            "finetune_steps": self.finetune_steps,
            "init": self.init,
        }

    def prepare(self) -> None:
        self.partitions = self.resolve_partitions(self._partition_spec, self.partition_mode)

    def initial_masks(self, names: list[str]) -> dict[str, torch.Tensor]:
        """First sparse masks of `names`, each partition ranked on its own."""
        scores = self.random_scores(names, "init") if self.init == "random" else self.magnitude_scores(names)
        wanted = set(names)
        masks: dict[str, torch.Tensor] = {}
        for part in self.partitions:
            members = [n for n in part if n in wanted]
            if members:
                masks.update(self.compute_masks(members, {n: scores[n] for n in members}))
        return masks

    def prune_partitions(self, partitions: list[list[str]]) -> dict[str, torch.Tensor]:
        """Magnitude masks at the target for every partition given, each ranked on its own."""
        masks: dict[str, torch.Tensor] = {}
        for part in partitions:
            masks.update(self.compute_masks(part, self.magnitude_scores(part)))
        return masks

    def after_gap_phase(self, step: int) -> Phase:
        return Phase("finetune" if step < self.total_steps else "done", step)
