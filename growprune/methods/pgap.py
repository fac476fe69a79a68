"""P-GaP, parallel scheduled grow-and-prune (Ma et al., ICLR 2022, Algorithm 2).

K workers start every round from the same sparse model. Worker k grows partition k to dense and
trains the whole model for `steps_per_phase` steps; then the workers merge: partition k's weights
come from worker k, everything outside the partitions (biases, norms, BatchNorm statistics) is
averaged over the workers (or taken from worker 0, as the authors did), and every partition is
pruned back to the target by magnitude. After `rounds` rounds the model fine-tunes with fixed
masks.

This class is the mask schedule of *one* worker. How the workers run -- K processes under
``torchrun`` or one after another in a single process -- is the engine's business; both end in
:meth:`PGaP.prune_after_merge`. P-GaP is growprune's :class:`~growprune.methods.rounds.RoundsMethod`:
the rounds loop and the merge (:func:`~growprune.methods.rounds.merge_worker_states`, a pure
function so the two modes can be checked against each other) live in ``methods/rounds.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from growprune.methods.base import Phase, check_choice, check_mask
from growprune.methods.errors import SparsifierStateError
from growprune.methods.gap import GaPSchedule, GaPSettings
from growprune.methods.rounds import (
    EXTERNAL_MERGE,
    MERGE_MODES,
    Merger,
    RoundsMethod,
    entry_owners,
    merge_worker_states,
)
from growprune.methods.settings import AtLeast, OfBudget, Part, as_count, check_steps, plural
from growprune.records import PhaseName

# Re-exported: these were P-GaP's before the rounds protocol moved to methods/rounds.py, and user
# code imports them from here.
__all__ = ["EXTERNAL_MERGE", "MERGE_MODES", "PGaP", "PGaPSettings", "entry_owners", "merge_worker_states"]


@dataclass(kw_only=True)
class PGaPSettings(GaPSettings):
    """Each round is one phase per worker: K workers train their partition in parallel."""

    merge_non_partition: Literal["average", "group0", "owner"] = "average"
    reset_optimizer: Literal["all"] = "all"  # the merge always starts workers afresh


class PGaP(GaPSchedule, RoundsMethod):
    """One P-GaP worker: it grows partition `worker` at the start of every round.

    `merger` is called by the optimizer step that ends a round, to exchange weights with the
    other workers (see :func:`merge_worker_states`). ``merger=EXTERNAL_MERGE`` ("external") says
    the caller merges and calls :meth:`finish_merge` itself before the next step. Without either,
    the round's end is an error: a P-GaP that never merges never prunes. See
    :class:`GaPSchedule` for the shared arguments.
    """

    method = "pgap"
    title = "P-GaP"
    # ranks_share_masks is False and loop is "rounds" (RoundsMethod): worker k holds partition k
    # dense until the merge
    supports_sharding = False  # K worker groups, each its own model copy: not with FSDP2 yet
    settings = PGaPSettings
    # K=2 (the bundled recipe), 4 rounds; the K workers' phases take 2/3 of the compute (K workers
    # x 4 rounds x 1/(6K) each), fine-tuning 1/3
    paper_schedule = {
        "partitions": 2,
        "rounds": 4,
        "epochs_per_phase": OfBudget(per=6, per_partition=True),
        "finetune_epochs": OfBudget(per=3),
    }
    # worker 0 of K=4, two rounds (two merges), fine-tuning for about a quarter of the run
    short_run = {"partitions": 4, "rounds": 2, "finetune_steps": AtLeast(1, Part(4)), "worker": 0}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        merge_non_partition: str = "average",
        worker: int = 0,
        merger: Merger | str | None = None,
        **kwargs: Any,
    ) -> None:
        self.merge_non_partition = check_choice("merge_non_partition", merge_non_partition, MERGE_MODES)
        self.worker = check_steps("worker", worker)
        if isinstance(merger, str) and merger != EXTERNAL_MERGE:
            raise ValueError(f"merger must be a callable, '{EXTERNAL_MERGE}' or None, got {merger!r}")
        self.merger = merger
        self.merged_rounds = 0
        super().__init__(model, optimizer, **kwargs)

    @staticmethod
    def phases_for(rounds: int, partitions: int) -> int:
        del partitions  # the K workers' phases run in parallel
        return rounds

    @staticmethod
    def describe_phases(rounds: int, partitions: int) -> str:
        return f"{plural(rounds, 'GaP phase')} (the {partitions} workers train in parallel)"

    def prepare(self) -> None:
        super().prepare()
        if self.worker >= self.num_partitions:
            raise ValueError(
                f"worker must be in [0, {self.num_partitions}) for {self.num_partitions} partitions"
            )
        self._sparse_masks: dict[str, torch.Tensor] = {}
        # True between a merge's prune and the next round's growth: the model is the merged,
        # pruned one, and an evaluation there (the engine's, after every merge) must say so.
        self._between_rounds = False

    def on_start(self) -> None:
        masks = self.initial_masks(self.names)
        self._sparse_masks = {n: m.clone() for n, m in masks.items()}
        self.change_masks(masks, "init")
        self.begin_round(0, self.worker)

    @property
    def num_workers(self) -> int:
        """One worker per partition."""
        return self.num_partitions

    @property
    def steps_per_round(self) -> int:
        """A round is one GaP phase of every worker, side by side."""
        return self.steps_per_phase

    def begin_round(self, round_index: int, worker: int) -> None:
        """Start round `round_index` as `worker`: the merged sparse masks with partition `worker`
        grown to dense, and fresh optimizer state (the authors build a new optimizer per step)."""
        self.worker = worker
        self._between_rounds = False
        self.step_count = round_index * self.steps_per_phase
        masks = dict(self._sparse_masks)
        for name in self.partitions[worker]:
            masks[name] = self.keep_all(name)
        self.change_masks(masks, f"grow-{worker + 1}", reset="all")

    def partition_owner(self) -> dict[str, int]:
        """State-dict key -> partition index, for every name a pruned weight is reachable under."""
        by_name = {t.name: t for t in self.targets}
        return {
            alias: k for k, part in enumerate(self.partitions) for n in part for alias in by_name[n].aliases
        }

    def is_round_end(self, step: int) -> bool:
        return 0 < step <= self.gap_end and step % self.steps_per_phase == 0

    def on_step(self, step: int) -> None:
        if not self.is_round_end(step) or self.merger == EXTERNAL_MERGE:
            return
        if self.merger is None:
            raise RuntimeError(self._unmerged_message(step))
        self.merger(self)
        self.finish_merge()

    def _unmerged_message(self, ended: int) -> str:
        return (
            f"P-GaP round {ended // self.steps_per_phase} ended at step {ended} without a merge, so it "
            "would never prune: pass merger=callable to PGaP (called here, e.g. exchanging states and "
            "merging them with growprune.merge_worker_states), or merger='external' and merge the K "
            "workers' states with growprune.merge_worker_states(...), load the result and call "
            "finish_merge() before the next optimizer step"
        )

    def check_can_step(self, step: int) -> None:
        """Training on past a round's end without its merge would never prune (sparsity stuck
        above the target while `phase` moves on), so it is refused before the step runs."""
        ended = step - 1
        if self.is_round_end(ended) and self.merged_rounds < ended // self.steps_per_phase:
            raise RuntimeError(self._unmerged_message(ended))

    def finish_merge(self) -> None:
        """After the weights are merged: prune every partition back, then grow ours again."""
        self.prune_after_merge()
        if self.merged_rounds < self.rounds:
            self.begin_round(self.merged_rounds, self.worker)

    def prune_after_merge(self) -> None:
        """Prune every partition back to the target by magnitude; all workers get equal masks."""
        masks = self.prune_partitions(self.partitions)
        self._sparse_masks = {n: m.clone() for n, m in masks.items()}
        self.merged_rounds = self.step_count // self.steps_per_phase
        self.change_masks(masks, "merge-prune", reset="all")
        self._between_rounds = self.step_count < self.gap_end

    def dense_partition_at(self, step: int) -> int | None:
        return self.worker if step < self.gap_end else None

    def describe_phase(self, step: int) -> Phase:
        if self._between_rounds and step == self.step_count:
            return Phase(PhaseName.MERGED, step, round=self.merged_rounds, rounds=self.rounds)
        if step < self.gap_end:
            return Phase(
                PhaseName.GAP,
                step,
                round=step // self.steps_per_phase + 1,
                rounds=self.rounds,
                dense_partition=self.worker + 1,
                partitions=self.num_partitions,
            )
        return self.after_gap_phase(step)

    def extra_state(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "merged_rounds": self.merged_rounds,
            "sparse_masks": {n: m.cpu() for n, m in self._sparse_masks.items()},
        }

    def check_extra_state(self, state: Mapping[str, Any], step: int) -> None:
        del step
        merged = state.get("merged_rounds", 0)
        count = as_count(merged)
        if count is None or not 0 <= count <= self.rounds:
            raise SparsifierStateError(
                f"P-GaP state's 'merged_rounds' must be an integer in [0, {self.rounds}], got {merged!r}"
            )
        sparse = state.get("sparse_masks")
        if not isinstance(sparse, Mapping):
            raise SparsifierStateError(
                "P-GaP state has no 'sparse_masks' dict: it was not made by state_dict()"
            )
        shapes = {t.name: tuple(t.shape) for t in self.targets}
        for name, mask in sparse.items():
            if name not in shapes:
                raise SparsifierStateError(
                    f"P-GaP state has a sparse mask for '{name}', which this sparsifier does not prune"
                )
            check_mask(name, mask, shapes[name], "P-GaP state's sparse mask")

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        # `worker` is not restored: every rank resumes from one file and keeps its own worker index.
        self.merged_rounds = as_count(state.get("merged_rounds", 0)) or 0
        devices = {t.name: t.param.device for t in self.targets}
        self._sparse_masks = {n: m.to(devices[n]) for n, m in state["sparse_masks"].items()}
