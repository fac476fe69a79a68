"""What every benchmark script shares: the machine and commit a result came from, the JSONL rows
the scripts append to, and the marked sections of ``benchmarks/RESULTS.md`` they rewrite.

The scripts are modules of the ``benchmarks`` package: run them from the repository root as
``python -m benchmarks.<name>`` (e.g. ``python -m benchmarks.quality --tier quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"


# -- provenance -------------------------------------------------------------------------------
def _cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, or None where the OS has none."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def machine() -> dict[str, Any]:
    """The machine a measurement ran on: CPU, cores, torch and its threads, GPU, load at start."""
    import torch

    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # AVX-512, AVX2 and torch's unvectorized kernels round differently: a result names them.
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": load_average(),
    }


def device_name() -> str:
    """``cpu``, or ``cuda:<GPU name>`` when a GPU is used."""
    import torch

    return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def git_commit(*paths: str) -> tuple[str, bool]:
    """HEAD, and whether the working tree differs from it under ``paths`` (everything if none).

    ``("unknown", True)`` outside a git checkout.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *paths],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return head, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


# -- result files -----------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL results file (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a JSONL results file (callers running threads hold a lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def add_trace_flags(parser: argparse.ArgumentParser, results: Path, parallel: str) -> None:
    """The flags every trace benchmark (gap_trace, pgap_trace) takes for how its runs run and
    where the record goes; ``parallel``: what ``--jobs`` runs side by side."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help=f"{parallel} traced in parallel (processes)")
    parser.add_argument(
        "--smoke", action="store_true", help="the quality benchmark's smoke tier; needs --out"
    )
    parser.add_argument("--out", type=Path, help=f"JSON to write (default {results.relative_to(ROOT)})")


def parse_trace_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed; a smoke run must say where it writes, so it never overwrites committed results."""
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke writes only where --out says (never the committed results)")
    return args


def write_record(
    out: Path, script: str, argv: list[str] | None, threads: int | None, jobs: int, runs: list[dict[str, Any]]
) -> None:
    """Write the JSON record of a trace benchmark's runs to ``out``, with the command that made
    it, the commit and the machine, so the record alone says how to reproduce it."""
    commit, dirty = git_commit("growprune", "benchmarks")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": f"python -m benchmarks.{script} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "dirty": dirty,
        "machine": machine(),
        "threads": threads,
        "parallel_jobs": jobs,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs": runs,
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")


# -- RESULTS.md sections ----------------------------------------------------------------------
def markers(name: str) -> tuple[str, str]:
    """The HTML comments that delimit section ``name`` of RESULTS.md."""
    return f"<!-- growprune:{name}:start -->", f"<!-- growprune:{name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """Put ``body`` between the markers of ``name``, appending the section if it is not there.

    Everything outside the markers (other scripts' sections, hand-written analysis) is kept.
    """
    start, end = markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        return f"{head}{block}{tail}"
    return f"{text.rstrip()}\n\n{block}\n" if text.strip() else f"# Benchmark results\n\n{block}\n"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) section ``name`` of the Markdown file ``path``."""
    text = path.read_text() if path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, name, body))


# -- the method registry, as the benchmarks ask it ---------------------------------------------
def prunes(method: str) -> bool:
    """Whether ``method`` prunes: False for a method whose settings fix its sparsity at 0 (dense).

    A method that prunes nothing runs once per seed, not once per sparsity, and its row stands in
    every sparsity column of a table; the registry's settings say which one it is.
    """
    from growprune.methods import METHODS

    fixed = {f.name: f.default for f in dataclasses.fields(METHODS[method].settings)}
    return fixed.get("sparsity") != 0.0


def supports_pattern(method: str) -> bool:
    """Whether ``method`` can prune to an N:M pattern (its class's ``supports_nm``)."""
    from growprune.methods import METHODS

    return bool(METHODS[method].supports_nm)


def sets_own_length(method: str) -> bool:
    """Whether ``method``'s own schedule sets a run's length (its class defines ``schedule_epochs``:
    C-GaP's and P-GaP's phases) rather than ``training.epochs``."""
    from growprune.methods import METHODS, Sparsifier

    return METHODS[method].schedule_epochs.__func__ is not Sparsifier.schedule_epochs.__func__  # type: ignore[attr-defined]


def method_order(methods: Iterable[str], lead_own_schedule: bool = False) -> list[str]:
    """``methods`` (registered names) in the method registry's order.

    ``lead_own_schedule``: the task tables' order, where the methods that prune nothing come
    first, then those whose own schedule sets the run's length (the grow-and-prune methods the
    tables are about), then the rest, each group in registry order.
    """
    from growprune.methods import METHODS

    rank = {name: i for i, name in enumerate(METHODS)}
    ordered = sorted(set(methods), key=rank.__getitem__)
    if not lead_own_schedule:
        return ordered
    return sorted(ordered, key=lambda m: (prunes(m), not sets_own_length(m)))
