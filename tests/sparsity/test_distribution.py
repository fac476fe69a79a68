"""Spreading a model-wide sparsity over layers: uniform, ERK, global, explicit; exact keep-counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growprune.sparsity.distribution import (
    allocate_keep_counts,
    erk_sparsities,
    layer_sparsities,
    validate_distribution,
    validate_sparsity,
)

sparsities = st.floats(min_value=0.0, max_value=0.999, allow_nan=False, exclude_max=False)
numel_lists = st.lists(st.integers(min_value=1, max_value=100_000), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(numels=numel_lists, data=st.data())
def test_allocate_keep_counts_total_exact_and_each_layer_within_one(
    numels: list[int], data: st.DataObject
) -> None:
    layer_sp = data.draw(st.lists(sparsities, min_size=len(numels), max_size=len(numels)))
    keep = allocate_keep_counts(numels, layer_sp)
    exact_zeros = [s * n for s, n in zip(layer_sp, numels)]
    assert len(keep) == len(numels)
    for k, n, z in zip(keep, numels, exact_zeros):
        assert isinstance(k, int) and 0 <= k <= n
        assert abs((n - k) - z) < 1.0  # within one element of the layer's own target
    # the model-wide number of zeros is the request rounded once, not a sum of per-layer roundings
    assert abs((sum(numels) - sum(keep)) - sum(exact_zeros)) <= 0.5 + 1e-6
    assert allocate_keep_counts(numels, layer_sp) == keep  # deterministic


def test_allocate_keep_counts_beats_per_layer_rounding() -> None:
    """Ten 3-element layers at 50%: rounding each layer alone would prune 20 or 10, not 15."""
    keep = allocate_keep_counts([3] * 10, [0.5] * 10)
    assert sum(keep) == 15 and set(keep) == {1, 2}
    assert keep == allocate_keep_counts([3] * 10, [0.5] * 10)


shapes = st.lists(
    st.one_of(
        st.tuples(st.integers(1, 300), st.integers(1, 300)),
        st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 5), st.integers(1, 5)),
        st.tuples(st.integers(1, 64), st.just(1), st.integers(1, 7)),  # depthwise conv1d
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(shapes=shapes, sparsity=st.floats(0.0, 0.99))
def test_erk_overall_matches_and_no_layer_denser_than_dense(
    shapes: list[tuple[int, ...]], sparsity: float
) -> None:
    result = erk_sparsities(shapes, sparsity)
    numels = [math.prod(s) for s in shapes]
    assert all(0.0 <= s < 1.0 or math.isclose(s, 1.0) for s in result)
    overall = sum(s * n for s, n in zip(result, numels)) / sum(numels)
    assert overall == pytest.approx(sparsity, abs=1e-3)
    # densities of the layers that were not capped at dense follow (sum(dims) / prod(dims))
    free = [i for i, s in enumerate(result) if s > 0.0]
    ratios = [(1.0 - result[i]) / (sum(shapes[i]) / numels[i]) for i in free]
    assert all(r == pytest.approx(ratios[0], rel=1e-6) for r in ratios)
    # a layer left dense is one whose ERK density would exceed 1
    if free:
        scale = ratios[0]
        for i, s in enumerate(result):
            if s == 0.0:
                assert scale * sum(shapes[i]) / numels[i] >= 1.0 - 1e-9


def test_erk_gives_small_layers_more_density() -> None:
    shapes = [(16, 3, 3, 3), (64, 64, 3, 3), (10, 64)]
    first, middle, last = erk_sparsities(shapes, 0.9)
    assert middle > first and middle > last


def test_layer_sparsities_named_and_explicit() -> None:
    names = ["enc.0.weight", "enc.1.weight", "head.weight"]
    shapes = [(8, 8), (8, 8), (4, 8)]
    assert layer_sparsities(names, shapes, 0.7, "uniform") == [0.7] * 3
    assert layer_sparsities(names, shapes, 0.7, "global") == [0.7] * 3
    explicit = layer_sparsities(names, shapes, 0.7, {"enc.1.*": 0.1, "enc.*": 0.9})
    assert explicit == [0.9, 0.1, 0.7]  # first matching pattern wins; unmatched get `sparsity`
    # a specific pattern after a broader one never applies: an error that says why
    with pytest.raises(ValueError, match=r"'enc\.1\.\*' is shadowed"):
        layer_sparsities(names, shapes, 0.7, {"enc.*": 0.9, "enc.1.*": 0.1})
    with pytest.raises(ValueError, match=r"'dec\.\*' matches no pruned layer"):
        layer_sparsities(names, shapes, 0.7, {"dec.*": 0.5})


@pytest.mark.parametrize("bad", [1.5, -0.1, 1.0, float("nan"), True, "0.5", None])
def test_validate_sparsity_names_argument_and_range(bad: object) -> None:
    with pytest.raises(ValueError, match=r"my_arg must be .*(\[0, 1\)|number)"):
        validate_sparsity(bad, "my_arg")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.0, 0.5, 0.999, 0])
def test_validate_sparsity_accepts_the_range(value: float) -> None:
    assert validate_sparsity(value) == float(value)


def test_validate_distribution() -> None:
    with pytest.raises(ValueError, match="distribution must be one of uniform, erk, global"):
        validate_distribution("ERK-ish")
    with pytest.raises(ValueError, match=r"distribution\['head\.\*'\] must be in \[0, 1\)"):
        validate_distribution({"head.*": 1.2})
    with pytest.raises(ValueError, match="distribution must be"):
        validate_distribution(0.5)  # type: ignore[arg-type]
    assert validate_distribution({"a": 0.5}) == {"a": 0.5}
