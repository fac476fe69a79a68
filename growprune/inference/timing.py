"""Side-by-side latency measurement that survives a noisy, shared machine.

Alternatives are run in interleaved rounds (A B C, B C A, C A B, ...) rather than one after
the other, so a burst of load from another process hits every alternative alike and the
*ratio* of medians stays meaningful even when absolute times drift. Calls far shorter than the
timer's resolution are repeated inside one sample. GPU work is synchronised before and after.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Per-call latency samples in milliseconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples)

    @property
    def min_ms(self) -> float:
        return min(self.samples)


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Variant:
    """One alternative to time: ``run`` is measured, ``prepare`` (e.g. swapping modules) is not."""

    run: Callable[[], Any]
    prepare: Callable[[], Any] | None = None


def measure(
    variants: Mapping[str, Variant | Callable[[], Any]],
    *,
    repeats: int = 15,
    warmup: int = 2,
    min_sample_s: float = 2e-4,
    device: torch.device | None = None,
) -> dict[str, Timing]:
    """Median-friendly samples of each variant, measured in rotating interleaved order."""
    items = {k: v if isinstance(v, Variant) else Variant(v) for k, v in variants.items()}
    inner: dict[str, int] = {}
    for name, variant in items.items():
        if variant.prepare:
            variant.prepare()
        for _ in range(max(warmup, 1)):
            synchronize(device)
            start = time.perf_counter()
            variant.run()
            synchronize(device)
            elapsed = time.perf_counter() - start
        inner[name] = max(1, min(1000, int(min_sample_s / max(elapsed, 1e-7)) + 1))
    samples: dict[str, list[float]] = {k: [] for k in items}
    names = list(items)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            variant, n = items[name], inner[name]
            if variant.prepare:
                variant.prepare()
            synchronize(device)
            start = time.perf_counter()
            for _ in range(n):
                variant.run()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) * 1e3 / n)
    return {k: Timing(v) for k, v in samples.items()}
