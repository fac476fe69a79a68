"""What C-GaP and P-GaP share: partitions, phase length, rounds, fine-tuning, initial masks.

The two differ only in who grows which partition when (one at a time in turn, or one per worker
in parallel) and in what happens at the end of a phase (prune-and-grow, or merge-and-prune).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from growprune.methods.base import INIT_MODES, Phase, Sparsifier, check_choice
from growprune.methods.settings import (
    AtLeast,
    Default,
    MethodSettings,
    Part,
    ScheduleFitError,
    Share,
    StepArgument,
    beyond_run,
    bounded,
    check_steps,
)
from growprune.records import PhaseName
from growprune.sparsity.partition import PARTITION_MODES, PartitionSpec, partition_count


@dataclass(kw_only=True)
class GaPSettings(MethodSettings):
    partitions: int | list[str | list[str]] = 4
    partition_mode: Literal["contiguous", "random"] = "contiguous"
    epochs_per_phase: float = bounded(gt=0)
    rounds: int = bounded(1, ge=1)
    finetune_epochs: float = bounded(0.0, ge=0)
    init: Literal["random", "magnitude"] = "random"


class PhaseSplit(Default):
    """steps_per_phase left out: the run less fine-tuning, split evenly over one worker's phases
    (``known`` holds both; the rounding remainder goes to fine-tuning: GaPSchedule.fit_to_run)."""

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        return (total - known["finetune_steps"]) // known["phases"]

    def __str__(self) -> str:
        return "(T - finetune_steps) // phases"


class GaPSchedule(Sparsifier):
    """Base of the scheduled grow-and-prune methods.

    `partitions` is K (split by `partition_mode`: balanced `contiguous` runs or seeded
    `random`) or a list of name-pattern groups. `init` chooses the first sparse masks: `random`
    (the paper) or `magnitude`. Subclasses say how many phases of `steps_per_phase` one process
    trains before the final prune (`phases`).
    """

    regrows = True
    settings = GaPSettings
    # In a recipe the schedule sets the run's length, so GaPSettings declares both keys itself:
    # epochs_per_phase is required and fine-tuning is "the rest of the run" after the phases, 0 epochs
    # (as in a callback given steps_per_phase: see fit_to_run).
    steps_per_phase = StepArgument(PhaseSplit(), minimum=1, epochs="epochs_per_phase")
    finetune_steps = StepArgument(
        Share(0.25), epochs="finetune_epochs", note="plus what the rounding of steps_per_phase leaves"
    )
    # `partitions` holds the resolved groups, which partition_mode only chose
    config_omits = ("partition_mode",)
    # one round of K=4 phases (3 phase changes), the final prune, fine-tuning for about a quarter of
    # the run (see short_schedule)
    short_run = {"partitions": 4, "rounds": 1, "finetune_steps": AtLeast(1, Part(4))}

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
        self.steps_per_phase, self.finetune_steps = steps_per_phase, finetune_steps
        self.rounds = check_steps("rounds", rounds, minimum=1)
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

    @staticmethod
    def phases_for(rounds: int, partitions: int) -> int:
        """Phases of `steps_per_phase` one worker trains before the final prune."""
        raise NotImplementedError

    @property
    def phases(self) -> int:
        return self.phases_for(self.rounds, self.num_partitions)

    @property
    def gap_end(self) -> int:
        """Optimizer step at which the last phase ends and fine-tuning begins."""
        return self.phases * self.steps_per_phase

    @property
    def total_steps(self) -> int:
        return self.gap_end + self.finetune_steps

    def phase_starts(self) -> list[int]:
        """First step of every GaP phase and of fine-tuning (where per-phase schedules restart)."""
        starts = [k * self.steps_per_phase for k in range(self.phases)]
        return starts + ([self.gap_end] if self.finetune_steps else [])

    @classmethod
    def check_schedule_arguments(cls, kwargs: Mapping[str, Any]) -> None:
        try:
            partition_count(kwargs.get("partitions", 4))
        except ValueError:
            raise ValueError(
                f"{cls.method}: partitions must be K >= 1 or a list of name-pattern groups, "
                f"got {kwargs.get('partitions')!r}"
            ) from None
        try:
            check_steps("rounds", kwargs.get("rounds", 1), minimum=1)
        except ValueError as err:
            raise ValueError(f"{cls.method}: {err}") from None

    @classmethod
    def fit_to_run(cls, kwargs: dict[str, Any], given: set[str], total: int) -> None:
        cls.check_schedule_arguments(kwargs)
        k = partition_count(kwargs.setdefault("partitions", 4))
        rounds = kwargs.setdefault("rounds", 1)
        phases, what = cls.phases_for(rounds, k), cls.describe_phases(rounds, k)
        if "steps_per_phase" in given:
            gap = phases * kwargs["steps_per_phase"]
            finetune = kwargs["finetune_steps"] if "finetune_steps" in given else 0
            if gap + finetune > total:
                raise ScheduleFitError(
                    f"{cls.method}: {what} of steps_per_phase={kwargs['steps_per_phase']} plus "
                    f"finetune_steps={finetune} need {gap + finetune} optimizer steps but the run has "
                    f"{total}",
                    "lower steps_per_phase, rounds, partitions or finetune_steps, or train longer",
                )
            kwargs.setdefault("finetune_steps", total - gap)
            return
        given_finetune = "finetune_steps" in given
        finetune = kwargs["finetune_steps"] if given_finetune else cls.finetune_steps.fill(total, {})
        if finetune > total:
            raise beyond_run(cls.method, "finetune_steps", finetune, total)
        split = {"finetune_steps": finetune, "phases": phases}
        if cls.steps_per_phase.default.steps(total, split) < 1:
            raise ScheduleFitError(
                f"{cls.method}: the run's {total} optimizer steps are too few for {what} of at least one "
                f"step plus {finetune} fine-tuning steps",
                f"train for at least {phases + finetune} steps, or lower partitions, rounds or "
                "finetune_steps",
            )
        per_phase = kwargs["steps_per_phase"] = cls.steps_per_phase.fill(total, split)
        kwargs["finetune_steps"] = finetune if given_finetune else total - phases * per_phase

    @classmethod
    def short_schedule(cls, total: int) -> dict[str, Any]:
        """``short_run`` gives partitions, rounds and the fine-tuning the phases leave room for;
        the phases share the rest, at least one step each, as in :meth:`fit_to_run` (the rounding
        goes to fine-tuning), without refusing a run too short for them."""
        kwargs = {k: v.steps(total, {}) if isinstance(v, Default) else v for k, v in cls.short_run.items()}
        phases = cls.phases_for(kwargs["rounds"], partition_count(kwargs["partitions"]))
        split = {"finetune_steps": kwargs["finetune_steps"], "phases": phases}
        per_phase = kwargs["steps_per_phase"] = cls.steps_per_phase.fill(total, split)
        kwargs["finetune_steps"] = max(0, total - phases * per_phase)
        return kwargs

    @classmethod
    def steady_schedule(cls, sparsity: float, never: int) -> dict[str, Any]:
        """K partitions, the first of them dense for a phase that never ends."""
        del sparsity
        return {"partitions": 4, "steps_per_phase": never}

    @staticmethod
    def describe_phases(rounds: int, partitions: int) -> str:
        """One worker's phases in words, for errors."""
        raise NotImplementedError

    @classmethod
    def schedule_epochs(cls, settings: GaPSettings) -> float:
        phases = cls.phases_for(settings.rounds, partition_count(settings.partitions))
        return phases * settings.epochs_per_phase + settings.finetune_epochs

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
                masks.update(self.compute_masks(members, scores))  # reads only the members
        return masks

    def prune_partitions(self, partitions: list[list[str]]) -> dict[str, torch.Tensor]:
        """Magnitude masks at the target for every partition given, each ranked on its own."""
        masks: dict[str, torch.Tensor] = {}
        for part in partitions:
            masks.update(self.compute_masks(part, self.magnitude_scores(part)))
        return masks

    def after_gap_phase(self, step: int) -> Phase:
        return Phase(PhaseName.FINETUNE if step < self.total_steps else PhaseName.DONE, step)
