"""Turning scores into masks: unstructured top-k and N:M.

Ties are broken by flat index (lower index kept first) so that equal scores give the same mask
on every run, rank and device. Top-k uses `kthvalue` for the threshold and resolves only the
tied entries explicitly: a full sort of 25M scores is several times slower, and a C-GaP phase
change must stay cheap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Pattern:
    """A sparsity pattern: unstructured, or N kept out of every M consecutive input weights."""

    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m if self.is_nm else float("nan")

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else "unstructured"


def parse_pattern(pattern: str | Pattern) -> Pattern:
    """Accept 'unstructured' or 'N:M' (e.g. '2:4')."""
    if isinstance(pattern, Pattern):
        return pattern
    if pattern == "unstructured":
        return Pattern()
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(pattern))
    if not match:
        raise ValueError(f"pattern must be 'unstructured' or 'N:M' such as '2:4', got {pattern!r}")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ValueError(f"pattern '{pattern}': N:M needs 0 < N < M, got N={n}, M={m}")
    return Pattern(n, m)


def check_nm_shape(name: str, shape: torch.Size, pattern: Pattern, input_first: bool = False) -> None:
    """N:M groups run along the input dimension: all dims but the first, flattened (Linear, Conv),
    or the first dim when the weight is stored input-first (transformers' ``Conv1D``, ``[in, out]``)."""
    fan_in = 1
    for d in shape[:1] if input_first else shape[1:]:
        fan_in *= d
    if fan_in % pattern.m:
        raise ValueError(
            f"pattern {pattern} does not fit '{name}': its input dimension {fan_in} "
            f"(shape {tuple(shape)}) is not divisible by M={pattern.m}; exclude the layer or "
            "use another M"
        )


# Above this many scores the threshold is found by bisection instead of ``kthvalue``, which
# copies the scores and an int64 index of each (12 bytes per score, 200 MiB for a 4096x4096
# layer): the same value, found with a few dozen counting passes that allocate one bool per score.
LEAN_TOPK_NUMEL = 1 << 20
SAMPLE_SIZE = 1 << 16  # entries of the strided sample that guesses the threshold's bracket
_TIE_CHUNK = 1 << 20
# Counting passes run over chunks of this many scores, so a pass holds a 4 MiB bool temporary,
# not one bool per score: building a compact sparsifier ranks a layer while the rest of the dense
# model still exists, and that layer's scores plus its bool temporaries were the build's peak.
_PASS_CHUNK = 1 << 22


def _chunks(flat: torch.Tensor) -> list[torch.Tensor]:
    return [flat[start : start + _PASS_CHUNK] for start in range(0, flat.numel(), _PASS_CHUNK)]


def _count_above(flat: torch.Tensor, value: torch.Tensor) -> int:
    return sum(int((chunk > value).count_nonzero()) for chunk in _chunks(flat))


def _between(chunk: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    inside = chunk >= low
    inside &= chunk <= high
    return inside


def topk_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask keeping the `keep` highest scores; ties go to the lowest flat index."""
    flat = scores.reshape(-1)
    numel = flat.numel()
    if keep >= numel:
        return torch.ones_like(scores, dtype=torch.bool)
    if keep <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    # The (numel - keep)-th smallest value: everything above it is kept for sure.
    threshold = _kth_largest(flat, keep)
    mask = flat > threshold
    missing = keep - int(mask.count_nonzero())  # count_nonzero: a bool .sum() would copy to int64
    start = 0
    while missing > 0:  # ties at the threshold, lowest flat index first, a chunk at a time
        chunk = flat[start : start + _TIE_CHUNK]
        tied = (chunk == threshold).nonzero().squeeze(1)[:missing]
        mask[start + tied] = True
        missing -= tied.numel()
        start += _TIE_CHUNK
    return mask.view_as(scores)


def _kth_largest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest entry of 1-D `flat` (a 0-d tensor), counting duplicates."""
    numel = flat.numel()
    if numel <= LEAN_TOPK_NUMEL or flat.dtype != torch.float32 or bool(flat.isnan().any()):
        return flat.kthvalue(numel - k).values
    bracketed = _kth_largest_in_bracket(flat, k)
    if bracketed is not None:
        return bracketed
    # Bisection over the float32 values in their bit order (an int32 key that sorts as the floats
    # do): the answer is the smallest key whose value has fewer than k entries above it.
    lo, hi = _sortable_key(flat.min()), _sortable_key(flat.max())
    while lo < hi:
        mid = (lo + hi) // 2
        if _count_above(flat, _key_value(mid).to(flat.device)) < k:
            hi = mid
        else:
            lo = mid + 1
    return _key_value(lo).to(flat.device)


def _kth_largest_in_bracket(flat: torch.Tensor, k: int) -> torch.Tensor | None:
    """The k-th largest entry from a bracket guessed on a strided sample: two counting passes
    check that it holds the answer, and ``kthvalue`` runs on the entries inside it only (a small
    fraction of them). None when the guess missed (the caller bisects instead)."""
    numel = flat.numel()
    stride = max(1, numel // SAMPLE_SIZE)
    sample = flat[::stride]
    m = sample.numel()
    rank = k * m / numel  # where the answer falls among the sample's largest
    margin = 4.0 * math.sqrt(rank + 1.0) + 8.0
    high_rank, low_rank = max(1, int(rank - margin)), min(m, int(rank + margin) + 1)
    high = sample.kthvalue(m - high_rank + 1).values  # the sample's high_rank-th largest
    low = sample.kthvalue(m - low_rank + 1).values
    above = _count_above(flat, high)
    count = sum(int(_between(chunk, low, high).count_nonzero()) for chunk in _chunks(flat))
    if not (above < k <= above + count) or count > numel // 8:
        return None
    candidates = torch.cat([chunk[_between(chunk, low, high)] for chunk in _chunks(flat)])
    return candidates.kthvalue(count - (k - above) + 1).values


def _sortable_key(value: torch.Tensor) -> int:
    bits = int(value.reshape(1).cpu().view(torch.int32).item())
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF) - 1


def _key_value(key: int) -> torch.Tensor:
    bits = key if key >= 0 else -(key + 1) | -0x80000000
    return torch.tensor([bits], dtype=torch.int32).view(torch.float32)[0]


def nm_mask(scores: torch.Tensor, pattern: Pattern, input_first: bool = False) -> torch.Tensor:
    """Keep the N highest scores in every group of M consecutive input weights.

    With `input_first` (a ``[in, out]`` weight) the groups run down the first dimension, so the
    mask is computed on the transpose: the groups a sparse kernel sees are the same either way.
    """
    if input_first:
        flat = scores.reshape(scores.shape[0], -1)
        return nm_mask(flat.t(), pattern).t().reshape(scores.shape)
    groups = scores.reshape(-1, pattern.m)
    # A stable sort on the negated scores keeps the lowest index first among ties.
    order = torch.sort(-groups, dim=1, stable=True).indices[:, : pattern.n]
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask.view_as(scores)
