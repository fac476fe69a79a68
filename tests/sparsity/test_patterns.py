"""Scores to masks: unstructured top-k with deterministic ties, and N:M along the input dimension."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from growprune.sparsity.patterns import Pattern, check_nm_shape, nm_mask, parse_pattern, topk_mask

tensor_shapes = st.lists(st.integers(1, 12), min_size=1, max_size=4).map(tuple)


def reference_topk(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep the `keep` highest scores, ties to the lowest flat index: a full stable sort."""
    flat = scores.reshape(-1)
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[: max(0, keep)]] = True
    return mask.view_as(scores)


@settings(max_examples=300, deadline=None)
@given(shape=tensor_shapes, data=st.data())
def test_topk_mask_exact_count_and_ties_to_lowest_index(shape: tuple[int, ...], data: st.DataObject) -> None:
    numel = math.prod(shape)
    keep = data.draw(st.integers(-2, numel + 2))
    # few distinct values, so ties at the threshold are the common case
    levels = data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 2**31 - 1))
    scores = torch.randint(0, levels, shape, generator=torch.Generator().manual_seed(seed)).float()
    mask = topk_mask(scores, keep)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert int(mask.sum()) == min(max(keep, 0), numel)
    if mask.any() and (~mask).any():
        assert scores[mask].min() >= scores[~mask].max()
    assert torch.equal(mask, reference_topk(scores, keep))


def test_topk_all_equal_scores_keep_lowest_indices() -> None:
    mask = topk_mask(torch.full((4, 5), 0.25), 7)
    assert mask.reshape(-1).tolist() == [True] * 7 + [False] * 13


def test_topk_continuous_scores() -> None:
    scores = torch.randn(64, 33, generator=torch.Generator().manual_seed(0))
    mask = topk_mask(scores, 100)
    assert int(mask.sum()) == 100
    assert scores[mask].min() > scores[~mask].max()


nm_patterns = st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (4, 8)])


@settings(max_examples=200, deadline=None)
@given(pattern=nm_patterns, data=st.data())
def test_nm_mask_exactly_n_per_group_of_m_along_input(pattern: tuple[int, int], data: st.DataObject) -> None:
    n, m = pattern
    conv = data.draw(st.booleans())
    out = data.draw(st.integers(1, 8))
    if conv:
        kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
        cin = m * data.draw(st.integers(1, 4))
        shape: tuple[int, ...] = (out, cin, kh, kw)
    else:
        shape = (out, m * data.draw(st.integers(1, 6)))
    seed = data.draw(st.integers(0, 2**31 - 1))
    levels = data.draw(st.sampled_from([2, 1000]))
    scores = torch.randint(0, levels, shape, generator=torch.Generator().manual_seed(seed)).float()
    check_nm_shape("w", torch.Size(shape), Pattern(n, m))
    mask = nm_mask(scores, Pattern(n, m))
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    # groups are M consecutive weights of one output row's flattened fan-in: never across rows
    rows = mask.reshape(out, -1)
    groups = rows.reshape(out, -1, m)
    assert (groups.sum(dim=2) == n).all()
    sgroups = scores.reshape(out, -1, m)
    for g, s in zip(groups.reshape(-1, m), sgroups.reshape(-1, m)):
        assert torch.equal(g, reference_topk(s, n))  # the N largest, ties to the lowest index


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unstructured", Pattern()),
        ("2:4", Pattern(2, 4)),
        (" 1 : 8 ", Pattern(1, 8)),
        (Pattern(2, 4), Pattern(2, 4)),
    ],
)
def test_parse_pattern(text: str | Pattern, expected: Pattern) -> None:
    assert parse_pattern(text) == expected


@pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "2-4", "structured", "", "2:4:8"])
def test_parse_pattern_rejects_with_allowed_forms(bad: str) -> None:
    with pytest.raises(ValueError, match=r"pattern"):
        parse_pattern(bad)
    try:
        parse_pattern(bad)
    except ValueError as err:
        assert "N:M" in str(err) or "unstructured" in str(err)


def test_pattern_sparsity_and_str() -> None:
    assert Pattern(2, 4).sparsity == 0.5 and str(Pattern(2, 4)) == "2:4"
    assert Pattern(1, 4).sparsity == 0.75
    assert str(Pattern()) == "unstructured" and not Pattern().is_nm


@pytest.mark.parametrize("shape", [(8, 6), (8, 3, 3, 3), (8, 1, 3)])
def test_check_nm_shape_names_the_layer_and_m(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"'layer\.weight'.*M=4"):
        check_nm_shape("layer.weight", torch.Size(shape), Pattern(2, 4))


def test_check_nm_shape_accepts_fan_in_multiple() -> None:
    """Fan-in (input size x kernel) a multiple of M passes, and only then: the same shapes with
    one input fewer are refused, so the check looks at the fan-in and not at anything else."""
    for ok, bad in [((3, 8), (3, 7)), ((3, 4, 3, 3), (3, 3, 3, 3)), ((5, 12), (5, 10))]:
        assert check_nm_shape("w", torch.Size(ok), Pattern(2, 4)) is None
        with pytest.raises(ValueError, match="M=4"):
            check_nm_shape("w", torch.Size(bad), Pattern(2, 4))


@settings(max_examples=200, deadline=None)
@given(pattern=nm_patterns, data=st.data())
def test_nm_mask_input_first_groups_run_down_the_first_dimension(
    pattern: tuple[int, int], data: st.DataObject
) -> None:
    """A weight stored [in, out] (transformers' Conv1D): its mask is the [out, in] mask transposed,
    so exactly N of every M consecutive entries of each column are kept."""
    n, m = pattern
    fan_in, out = m * data.draw(st.integers(1, 6)), data.draw(st.integers(1, 8))
    seed = data.draw(st.integers(0, 2**31 - 1))
    levels = data.draw(st.sampled_from([2, 1000]))
    scores = torch.randint(0, levels, (fan_in, out), generator=torch.Generator().manual_seed(seed)).float()
    check_nm_shape("w", scores.shape, Pattern(n, m), input_first=True)
    mask = nm_mask(scores, Pattern(n, m), input_first=True)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    assert torch.equal(mask, nm_mask(scores.t().contiguous(), Pattern(n, m)).t())
    columns = mask.t().reshape(out, -1, m)
    assert (columns.sum(dim=2) == n).all()
    for g, s in zip(columns.reshape(-1, m), scores.t().reshape(out, -1, m).reshape(-1, m)):
        assert torch.equal(g, reference_topk(s, n))


def test_check_nm_shape_input_first_uses_the_first_dimension() -> None:
    check_nm_shape("w", torch.Size((8, 6)), Pattern(2, 4), input_first=True)
    with pytest.raises(ValueError, match=r"'w'.*input dimension 6.*M=4"):
        check_nm_shape("w", torch.Size((6, 8)), Pattern(2, 4), input_first=True)
    check_nm_shape("w", torch.Size((6, 8)), Pattern(2, 4))


def _kthvalue_topk(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """The reference: threshold from kthvalue, ties to the lowest flat index."""
    flat = scores.reshape(-1)
    threshold = flat.kthvalue(flat.numel() - keep).values
    mask = flat > threshold
    missing = keep - int(mask.count_nonzero())
    if missing > 0:
        mask[(flat == threshold).nonzero().squeeze(1)[:missing]] = True
    return mask.view_as(scores)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(2, 300),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["normal", "few-values", "restricted", "signed-zeros"]),
    data=st.data(),
)
def test_lean_threshold_keeps_what_kthvalue_keeps(n: int, seed: int, kind: str, data: st.DataObject) -> None:
    """Large layers find the threshold without copying the scores (a bracket guessed on a strided
    sample, else bisection over the float order); the mask must be the one kthvalue's threshold
    gives, ties included."""
    from growprune.sparsity import patterns

    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        scores = torch.randn(n, generator=gen)
    elif kind == "few-values":
        scores = torch.randint(-2, 3, (n,), generator=gen).float()
    elif kind == "restricted":  # what restrict() makes: -1 outside the allowed entries
        scores = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, torch.rand(n, generator=gen))
    else:
        scores = torch.zeros(n) * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        scores += (torch.rand(n, generator=gen) < 0.3).float()
    keep = data.draw(st.integers(1, n - 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(patterns, "LEAN_TOPK_NUMEL", 1)
        patch.setattr(patterns, "_TIE_CHUNK", 7)
        patch.setattr(patterns, "SAMPLE_SIZE", data.draw(st.integers(2, 400)))  # strided samples too
        lean = topk_mask(scores, keep)
    assert torch.equal(lean, _kthvalue_topk(scores, keep))
