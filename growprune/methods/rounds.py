"""Methods that train in rounds of K workers merged at each round's end, and their merge.

P-GaP (``methods/pgap.py``) is the built-in one: worker k grows partition k to dense, trains the
whole model, and at the round's end partition k's weights come from worker k. The trainer's rounds
loop (``growprune.train.loops.RoundLoop``) and its merge over process groups
(``growprune.train.distributed.merge_across_groups``) are written against :class:`RoundsMethod`,
never against a method by name, so a second rounds method is one subclass (and a
:func:`~growprune.methods.register_method` call), without an edit to ``growprune/train``.

The merge itself is method-neutral: each pruned weight's state-dict key has an owning worker
(:meth:`RoundsMethod.partition_owner`); :func:`merge_worker_states` takes owned entries from their
owner and the rest as ``merge_non_partition`` says. It is a pure function so that the two ways the
workers run -- K process groups under ``torchrun`` or one after another in one process -- can be
checked against each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch

from growprune.methods.base import Sparsifier, check_choice
from growprune.sparsity.masks import MASK_SUFFIX

# How entries outside the partitions (biases, norms, BatchNorm statistics) are merged.
MERGE_MODES = ("average", "group0", "owner")

# merger=EXTERNAL_MERGE: the caller merges the K workers' states itself, loads the result and tells
# the method before the next optimizer step (P-GaP: finish_merge(); growprune's rounds loop, which
# trains the workers in parallel groups or one after another, calls prune_after_merge()).
EXTERNAL_MERGE = "external"

# A merger called by the optimizer step that ends a round (users' own loops): it exchanges the
# workers' states and loads the merged one.
Merger = Callable[["RoundsMethod"], None]


class RoundsMethod(Sparsifier):
    """What growprune's rounds loop asks of a method that trains in rounds of K merged workers.

    A subclass declares ``loop = "rounds"`` by inheriting it, and its constructor must accept
    ``merger=EXTERNAL_MERGE`` (the loop passes it: the loop, not an optimizer-step hook, merges).
    Per round the loop, for every worker k (in parallel groups or in turn in one process), calls
    :meth:`begin_round`, trains :attr:`steps_per_round` optimizer steps from the round's common
    start, merges the workers' model states with :func:`merge_worker_states` (owner map from
    :meth:`partition_owner`, mode :attr:`merge_non_partition`) and calls :meth:`prune_after_merge`
    on the merged model. Rounds run from :attr:`merged_rounds` (restored from checkpoints) to
    :attr:`rounds`; the steps after :attr:`rounds_end` run as in the step loop (fine-tuning).

    The methods here raise ``NotImplementedError``: they are the protocol, not a default.
    :class:`~growprune.methods.pgap.PGaP` is the worked example.
    """

    loop: ClassVar[str] = "rounds"
    # Worker k's masks differ from worker j's between merges by design; the loop checks masks
    # across the ranks of each worker's data-parallel group and across all ranks after a merge.
    ranks_share_masks: ClassVar[bool] = False

    # Attributes (or properties) of the subclass, set by its constructor (merged_rounds also by
    # its state loading). Declared here, without a value, so that a missing one is an error
    # naming it rather than a default nobody chose.
    rounds: int  # rounds before fine-tuning
    num_workers: int  # K: workers per round (process groups under torchrun)
    steps_per_round: int  # optimizer steps each worker trains per round
    merged_rounds: int  # rounds already merged: where a resumed run goes on
    worker: int  # this process's worker (the loop sets it under torchrun)
    merge_non_partition: str  # one of MERGE_MODES

    @property
    def rounds_end(self) -> int:
        """One worker's optimizer step at which the last round ends (fine-tuning starts)."""
        return self.rounds * self.steps_per_round

    def begin_round(self, round_index: int, worker: int) -> None:
        """Become `worker` at the start of round `round_index`, on the merged model: set its masks,
        ``step_count = round_index * steps_per_round`` (one process replays the round's steps once
        per worker) and reset what must not carry over between rounds."""
        raise NotImplementedError

    def partition_owner(self) -> dict[str, int]:
        """State-dict key -> the worker whose copy of that pruned weight the merge keeps, for every
        key a pruned weight is reachable under."""
        raise NotImplementedError

    def prune_after_merge(self) -> None:
        """After the merged weights were loaded: recompute the masks (equal on every worker) and
        count the round as merged."""
        raise NotImplementedError


def _is_mask(key: str) -> bool:
    return key.endswith(MASK_SUFFIX)


def entry_owners(keys: Sequence[str], owner: Mapping[str, int]) -> dict[str, int]:
    """For ``merge_non_partition="owner"``: the worker each entry outside the partitions comes from.

    An entry belongs to the pruned layer it works with: a bias (or any entry of the module that
    holds a pruned weight) to that weight's partition, a norm layer's scale, shift and running
    statistics to the last pruned weight before it in `keys` (state-dict order, which is module
    registration order). Entries before the first pruned weight have no owner and are averaged.
    Why: worker k trains the layers of partition k dense and the rest sparse, so the BatchNorm
    that follows one of its layers was fitted to worker k's weights; averaging it with workers
    whose copy of that layer was sparse (or taking worker 0's) pairs weights and statistics that
    never ran together.
    """
    module_owner = {key.rpartition(".")[0]: k for key, k in owner.items()}
    result: dict[str, int] = {}
    last: int | None = None
    for key in keys:
        if key in owner:
            last = owner[key]
            continue
        module = key.rpartition(".")[0]
        if module in module_owner:
            result[key] = module_owner[module]
        elif last is not None:
            result[key] = last
    return result


def merge_worker_states(
    worker_states: Sequence[Mapping[str, torch.Tensor]],
    owner: Mapping[str, int],
    mode: str = "average",
) -> dict[str, torch.Tensor]:
    """The merge of K workers' model state dicts at a round's end (P-GaP: worker k grew partition k).

    `owner` maps each pruned weight's state-dict key to its partition
    (:meth:`RoundsMethod.partition_owner`). Partition k's weights come from worker k. Other
    floating-point entries (biases, norms, BatchNorm running statistics) are averaged over the
    workers, taken from worker 0 with ``mode="group0"`` (the authors' code), or with
    ``mode="owner"`` from the worker that owns the layer they belong to (:func:`entry_owners`);
    integer buffers and masks come from worker 0 (masks are recomputed by the prune that follows).
    """
    check_choice("merge_non_partition", mode, MERGE_MODES)
    if len(worker_states) != max(owner.values()) + 1:
        raise ValueError(f"merge needs one state per partition: got {len(worker_states)}")
    merged: dict[str, torch.Tensor] = {}
    follows = entry_owners(list(worker_states[0]), owner) if mode == "owner" else {}
    for key, first in worker_states[0].items():
        if key in owner:
            merged[key] = worker_states[owner[key]][key].clone()
        elif key in follows and first.is_floating_point() and not _is_mask(key):
            merged[key] = worker_states[follows[key]][key].clone()
        elif mode in ("average", "owner") and first.is_floating_point() and not _is_mask(key):
            total = worker_states[0][key].clone()
            for state in worker_states[1:]:
                total += state[key]
            merged[key] = total / len(worker_states)
        else:
            merged[key] = first.clone()
    return merged
