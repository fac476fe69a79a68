"""Split the prunable layers into the K partitions that GaP grows one (C-GaP) or all (P-GaP) at
a time.

Balanced partitions matter: C-GaP's peak memory is (1-r) + r * (largest partition share), so a
partition holding half the weights throws away most of the saving of K=4.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch

from growprune.seeding import check_seed, keyed_seed

PartitionSpec = int | Sequence[str | Sequence[str]]
PARTITION_MODES = ("contiguous", "random")


def _balanced_split(numels: Sequence[int], k: int) -> list[list[int]]:
    """Cut a sequence into k non-empty contiguous runs whose largest sum is as small as possible.

    The smallest feasible largest-run size is found by bisection (a greedy packing decides
    feasibility); the runs are then packed left to right, opening a new run early when the
    remaining layers are needed to keep every run non-empty.
    """

    def runs_needed(limit: int) -> int:
        count, current = 1, 0
        for size in numels:
            if current + size > limit:
                count, current = count + 1, size
            else:
                current += size
        return count

    low, high = max(numels), sum(numels)
    while low < high:
        middle = (low + high) // 2
        if runs_needed(middle) <= k:
            high = middle
        else:
            low = middle + 1
    runs: list[list[int]] = [[]]
    current = 0
    for i, size in enumerate(numels):
        must_open = len(numels) - i == k - len(runs)
        if runs[-1] and (current + size > low or must_open):
            runs.append([])
            current = 0
        runs[-1].append(i)
        current += size
    return runs


def partition_count(partitions: PartitionSpec) -> int:
    """K of a partition spec, known before any model exists (recipes, run lengths, process groups)."""
    if isinstance(partitions, int) and not isinstance(partitions, bool) and partitions >= 1:
        return partitions
    if isinstance(partitions, Sequence) and not isinstance(partitions, str) and partitions:
        return len(partitions)
    raise ValueError(
        "partitions must be an int K >= 1 or a non-empty list of name-pattern lists, e.g. "
        f"[['encoder.*'], ['decoder.*']], got {partitions!r}"
    )


def partition_layers(
    names: Sequence[str],
    numels: Sequence[int],
    partitions: PartitionSpec,
    mode: str = "contiguous",
    seed: int = 0,
) -> list[list[str]]:
    """Resolve a partition spec into K lists of target names.

    `partitions` is either K (an int: `contiguous` runs in registration order balanced by
    parameter count, or a seeded `random` assignment, also balanced), or a list of K entries of
    fnmatch name patterns (a string or a list of strings each), e.g. ``["encoder.*",
    "decoder.*"]``. Every target must fall in exactly one partition and no partition may be
    empty.
    """
    seed = check_seed(seed)
    if isinstance(partitions, bool):
        raise ValueError(f"partitions must be an int K >= 1 or a list of name patterns, got {partitions!r}")
    if isinstance(partitions, int):
        if mode not in PARTITION_MODES:
            raise ValueError(f"partition mode must be one of {', '.join(PARTITION_MODES)}, got '{mode}'")
        if not 1 <= partitions <= len(names):
            raise ValueError(
                f"partitions must be between 1 and the number of pruned layers ({len(names)}), "
                f"got {partitions}"
            )
        order = list(range(len(names)))
        if mode == "random":
            generator = torch.Generator().manual_seed(keyed_seed(seed, "partition"))
            order = torch.randperm(len(names), generator=generator).tolist()
        runs = _balanced_split([numels[i] for i in order], partitions)
        return [sorted((names[order[i]] for i in run), key=names.index) for run in runs]
    partition_count(partitions)  # refuses anything but a non-empty list of patterns
    groups = [[p] if isinstance(p, str) else list(p) for p in partitions]
    result: list[list[str]] = [[] for _ in groups]
    for name in names:
        hits = [k for k, pats in enumerate(groups) if any(fnmatch.fnmatchcase(name, p) for p in pats)]
        if not hits:
            raise ValueError(
                f"layer '{name}' matches no partition pattern; every pruned layer must be in one"
            )
        if len(hits) > 1:
            raise ValueError(f"layer '{name}' matches partitions {hits}; it must be in exactly one")
        result[hits[0]].append(name)
    for k, members in enumerate(result):
        if not members:
            raise ValueError(f"partition {k} ({groups[k]}) is empty: its patterns match no pruned layer")
    return result
