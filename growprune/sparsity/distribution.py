"""How a model-wide sparsity is spread over layers.

A distribution turns one number (the requested overall sparsity) into a per-layer sparsity and
then into exact integer keep-counts. The counts are allocated together (largest remainder) so
that the overall figure is the request to the element while every layer stays within one
element of its own target: rounding each layer on its own drifts by up to half an element per
layer, which on small models is visible in the report users check first.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence

NAMED_DISTRIBUTIONS = ("uniform", "erk", "global")

DistributionSpec = str | Mapping[str, float]


def validate_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """Reject values that cannot be a sparsity, naming the argument."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float):
        raise ValueError(f"{name} must be a number in [0, 1), got {sparsity!r}")
    if not (0.0 <= float(sparsity) < 1.0) or math.isnan(sparsity):
        raise ValueError(f"{name} must be in [0, 1) (0.8 = 80% zeros), got {sparsity!r}")
    return float(sparsity)


def validate_distribution(distribution: DistributionSpec) -> DistributionSpec:
    if isinstance(distribution, str):
        if distribution not in NAMED_DISTRIBUTIONS:
            raise ValueError(
                f"distribution must be one of {', '.join(NAMED_DISTRIBUTIONS)} or a mapping "
                f"{{name pattern: sparsity}}, got '{distribution}'"
            )
        return distribution
    if isinstance(distribution, Mapping):
        for pattern, value in distribution.items():
            validate_sparsity(value, f"distribution['{pattern}']")
        return dict(distribution)
    raise ValueError(
        f"distribution must be a name ({', '.join(NAMED_DISTRIBUTIONS)}) or a mapping, "
        f"got {type(distribution).__name__}"
    )


def erk_sparsities(shapes: Sequence[Sequence[int]], sparsity: float, power: float = 1.0) -> list[float]:
    """Erdos-Renyi-Kernel sparsities (Evci et al. 2020), dense layers redistributed.

    A layer's density is proportional to sum(dims) / prod(dims): small layers (first conv,
    classifier) keep more of their weights. When that would make a layer denser than dense, it
    is fixed dense and the remaining budget is spread again over the others.
    """
    numels = [math.prod(s) for s in shapes]
    raw = [(sum(s) / math.prod(s)) ** power for s in shapes]
    total_keep = (1.0 - sparsity) * sum(numels)
    dense: set[int] = set()
    while True:
        budget = total_keep - sum(numels[i] for i in dense)
        weighted = sum(raw[i] * numels[i] for i in range(len(shapes)) if i not in dense)
        if weighted <= 0:
            break
        eps = budget / weighted
        over = [i for i in range(len(shapes)) if i not in dense and eps * raw[i] > 1.0]
        if not over:
            break
        dense.update(over)
    return [0.0 if i in dense else max(0.0, 1.0 - eps * raw[i]) for i in range(len(shapes))]


def layer_sparsities(
    names: Sequence[str],
    shapes: Sequence[Sequence[int]],
    sparsity: float,
    distribution: DistributionSpec,
) -> list[float]:
    """Per-layer sparsity for a named or explicit distribution.

    `global` returns the uniform figure: the pooled ranking happens when masks are computed,
    and the per-layer numbers only fix the total budget.
    An explicit mapping assigns `{fnmatch pattern: sparsity}`; layers no pattern matches get
    `sparsity`; a pattern that matches no layer is an error (it is almost always a typo).
    """
    if distribution in ("uniform", "global"):
        return [sparsity] * len(names)
    if distribution == "erk":
        return erk_sparsities(shapes, sparsity)
    assert isinstance(distribution, Mapping)
    result = []
    used = set()
    for name in names:
        value = sparsity
        for pattern, layer_value in distribution.items():
            if fnmatch.fnmatchcase(name, pattern):
                value = layer_value
                used.add(pattern)
                break
        result.append(float(value))
    unused = [p for p in distribution if p not in used]
    shadowed = [p for p in unused if any(fnmatch.fnmatchcase(n, p) for n in names)]
    if shadowed:
        # First match wins, so a specific pattern listed after a broader one never applies.
        raise ValueError(
            f"distribution pattern '{shadowed[0]}' is shadowed: every layer it matches is already "
            "matched by an earlier pattern (the first matching pattern wins); list it first"
        )
    if unused:
        raise ValueError(
            f"distribution pattern '{unused[0]}' matches no pruned layer; known layers: "
            f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
        )
    return result


def allocate_keep_counts(numels: Sequence[int], sparsities: Sequence[float]) -> list[int]:
    """Integer number of kept weights per layer.

    The total number of zeros is round(sum(sparsity_l * numel_l)); each layer gets the floor of
    its own zeros plus one more for the layers with the largest fractional parts (ties broken by
    layer order, so the allocation is deterministic).
    """
    exact = [s * n for s, n in zip(sparsities, numels)]
    zeros = [math.floor(z) for z in exact]
    missing = round(sum(exact)) - sum(zeros)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - zeros[i]), i))
    for i in order[: max(0, missing)]:
        zeros[i] += 1
    return [n - z for n, z in zip(numels, zeros)]
