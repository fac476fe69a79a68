"""Peak memory of a training run, as the final record and the report state it.

Sparse training is only worth its name if it costs less memory than dense training, so every run
says what it used. On a CUDA device that is ``torch.cuda.max_memory_allocated`` since the
training loop started (the allocator's own count, exact). On the CPU there is no allocator
count: the process's peak resident set size (``VmHWM``, else ``ru_maxrss``) is what the operating
system charged, and the part above its value when the loop started is what training added on
top of the interpreter, torch, the data and the built model. The peak never goes down, so
that difference is zero when training stayed below an earlier peak (a large data set decoded at
start); the benchmark ``benchmarks/memory.py`` measures each configuration in a fresh process for
that reason.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20
# The FinalRecord fields that carry a PeakMemory: measurements of the process, which differ
# between two processes running the same run (a resumed one included).
PEAK_MEMORY_FIELDS = ("peak_rss_mib", "peak_rss_above_start_mib", "peak_cuda_mib")


def process_peak_rss() -> int | None:
    """This process's peak resident set size in bytes, or None where the OS does not say.

    On Linux the high-water mark of this program's own memory map (``VmHWM`` in
    ``/proc/self/status``): ``getrusage``'s ``ru_maxrss`` is carried across ``exec``, so a run
    started by a large process (a test session, a notebook) would report its parent's size.
    Elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS bytes, Linux KiB


@dataclass(frozen=True)
class PeakMemory:
    """What a run used: peak RSS of the process (CPU) and peak allocated device memory (CUDA)."""

    rss_mib: float | None  # process peak RSS
    rss_above_start_mib: float | None  # of which above the RSS peak when training started
    cuda_mib: float | None  # torch.cuda.max_memory_allocated since training started

    def record_fields(self) -> dict[str, float | None]:
        """The FinalRecord fields that carry it."""
        return dict(zip(PEAK_MEMORY_FIELDS, (self.rss_mib, self.rss_above_start_mib, self.cuda_mib)))


class PeakMemoryMeter:
    """Start at the first step of the loop; read at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        self.start_rss = process_peak_rss()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.device = device

    def read(self) -> PeakMemory:
        rss = process_peak_rss()
        above = None if rss is None or self.start_rss is None else max(0, rss - self.start_rss) / MIB
        cuda = torch.cuda.max_memory_allocated(self.device) / MIB if self.cuda else None
        rss_mib = None if rss is None else rss / MIB
        return PeakMemory(rss_mib=rss_mib, rss_above_start_mib=above, cuda_mib=cuda)
