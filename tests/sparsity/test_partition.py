"""Splitting the pruned layers into the K partitions of GaP."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growprune.sparsity.partition import partition_layers

layer_sizes = st.lists(st.integers(1, 1000), min_size=1, max_size=8)


def best_contiguous_max(numels: list[int], k: int) -> int:
    """Smallest possible largest-partition size over all contiguous splits (brute force)."""
    n = len(numels)
    best = sum(numels)
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = [0, *cuts, n]
        best = min(best, max(sum(numels[a:b]) for a, b in zip(bounds, bounds[1:])))
    return best


@settings(max_examples=300, deadline=None)
@given(numels=layer_sizes, data=st.data())
def test_contiguous_partitions_cover_once_nonempty_balanced(numels: list[int], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(numels)))
    names = [f"layer{i}.weight" for i in range(len(numels))]
    parts = partition_layers(names, numels, k, "contiguous")
    assert len(parts) == k and all(parts)
    flat = [n for part in parts for n in part]
    assert flat == names  # each layer exactly once, runs in registration order: contiguous
    sizes = [sum(numels[names.index(n)] for n in part) for part in parts]
    # C-GaP peak memory is set by the largest partition: it must be close to the best split
    assert max(sizes) <= best_contiguous_max(numels, k) + max(numels)
    assert max(sizes) <= sum(numels) / k + max(numels)
    assert partition_layers(names, numels, k, "contiguous") == parts


def test_contiguous_equal_layers_split_evenly() -> None:
    names = [f"l{i}" for i in range(12)]
    parts = partition_layers(names, [10] * 12, 4)
    assert [len(p) for p in parts] == [3, 3, 3, 3]
    assert parts[0] == ["l0", "l1", "l2"]


@settings(max_examples=200, deadline=None)
@given(numels=layer_sizes, data=st.data())
def test_random_partitions_seeded_cover_once(numels: list[int], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(numels)))
    seed = data.draw(st.integers(0, 1000))
    names = [f"layer{i}.weight" for i in range(len(numels))]
    parts = partition_layers(names, numels, k, "random", seed)
    assert len(parts) == k and all(parts)
    assert sorted(n for part in parts for n in part) == sorted(names)
    for part in parts:  # listed in model order inside each partition
        assert part == sorted(part, key=names.index)
    sizes = [sum(numels[names.index(n)] for n in part) for part in parts]
    assert max(sizes) <= sum(numels) / k + max(numels)
    assert partition_layers(names, numels, k, "random", seed) == parts


def test_random_partitions_depend_on_seed() -> None:
    names = [f"l{i}" for i in range(16)]
    draws = {tuple(map(tuple, partition_layers(names, [5] * 16, 4, "random", s))) for s in range(6)}
    assert len(draws) > 1


def test_partitions_by_name_pattern() -> None:
    names = ["enc.0.w", "enc.1.w", "dec.0.w", "dec.1.w", "head.w"]
    parts = partition_layers(names, [1] * 5, ["enc.*", ["dec.*", "head.*"]])
    assert parts == [["enc.0.w", "enc.1.w"], ["dec.0.w", "dec.1.w", "head.w"]]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["enc.*"], r"layer 'dec\.0\.w' matches no partition"),
        (["enc.*", "*.0.w", "dec.1.w"], r"layer 'enc\.0\.w' matches partitions \[0, 1\]"),
        (["enc.*", [], "dec.*"], r"partition 1 \(\[\]\) is empty"),
        (["enc.*", "dec.*", "nope.*"], r"partition 2 \(\['nope\.\*'\]\) is empty"),
        ([], "non-empty list"),
        ("enc.*", "non-empty list"),
        (0, r"between 1 and the number of pruned layers \(4\)"),
        (5, r"between 1 and the number of pruned layers \(4\), got 5"),
        (True, "int K"),
    ],
)
def test_bad_partition_specs(spec: object, message: str) -> None:
    names = ["enc.0.w", "enc.1.w", "dec.0.w", "dec.1.w"]
    with pytest.raises(ValueError, match=message):
        partition_layers(names, [1] * 4, spec)  # type: ignore[arg-type]


def test_bad_partition_mode() -> None:
    with pytest.raises(ValueError, match="contiguous, random"):
        partition_layers(["a", "b"], [1, 1], 2, "striped")
