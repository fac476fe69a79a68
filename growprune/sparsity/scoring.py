"""Scores that rank weights for pruning (low = pruned first) and growing (high = grown first).

Scores are float32 on the parameter's device whatever the parameter's dtype: ranking bf16 or
fp16 values directly produces many more ties. Random scores come from a generator seeded by
(seed, purpose, event, layer) and drawn on the CPU, so every rank, device and resumed run draws
the same masks without sharing any RNG state -- the reference GaP code drew unseeded masks and
its ranks silently disagreed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from growprune.seeding import keyed_seed
from growprune.sparsity.compact import GrowthCandidates
from growprune.sparsity.patterns import topk_mask

# What an update that grows by gradient magnitude reads of a layer's dense gradient: |gradient|
# as a dense float32 tensor, or (a compact layer) only the candidates it can grow.
DenseGradient = torch.Tensor | GrowthCandidates


def magnitude(param: torch.Tensor) -> torch.Tensor:
    return param.detach().abs().float()


def random_scores(shape: torch.Size, device: torch.device, *keys: object) -> torch.Tensor:
    generator = torch.Generator().manual_seed(keyed_seed(*keys))
    return torch.rand(shape, generator=generator).to(device)


def gradient_magnitude(grad: torch.Tensor | None, name: str) -> torch.Tensor:
    if grad is None:
        raise RuntimeError(
            f"no gradient for '{name}' at a gradient-based mask update: run loss.backward() "
            "before optimizer.step() (or pass a closure that does)"
        )
    return grad.detach().abs().float()


def top_by_gradient(gradient: DenseGradient, survivors: torch.Tensor, count: int) -> torch.Tensor:
    """Mask of the `count` positions outside `survivors` of highest |gradient| (ties to the
    lowest flat index); a dense |gradient| tensor is used up (restricted in place)."""
    if isinstance(gradient, GrowthCandidates):
        return gradient.top(survivors, count)
    return topk_mask(gradient.masked_fill_(survivors, -1.0), count)


def restrict(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Push entries outside `allowed` below every allowed score, so they are never chosen."""
    return torch.where(allowed, scores, torch.full_like(scores, -1.0))


class LazyScores(Mapping[str, torch.Tensor]):
    """Layer name -> scores, each made when it is read and not kept.

    Mask computations rank one layer at a time (unless the distribution is global), so the
    scores of every layer need never exist at once: in compact storage that would be a float
    copy of the whole dense model at every mask change. Reading a layer twice makes it twice
    (every score function here is deterministic)."""

    def __init__(self, names: Sequence[str], make: Callable[[str], torch.Tensor]) -> None:
        self._names = list(names)
        self._known = set(self._names)
        self._make = make

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._known:
            raise KeyError(name)
        return self._make(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def map(self, change: Callable[[str, torch.Tensor], torch.Tensor]) -> LazyScores:
        """Scores passed through `change(name, scores)` when read (e.g. restricted to a mask)."""
        return LazyScores(self._names, lambda name: change(name, self._make(name)))
