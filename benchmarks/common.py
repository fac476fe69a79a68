"""What every benchmark script shares: the machine and commit a result came from, the JSONL rows
the scripts append to, and the marked sections of ``benchmarks/RESULTS.md`` they rewrite.

The scripts are modules of the ``benchmarks`` package: run them from the repository root as
``python -m benchmarks.<name>`` (e.g. ``python -m benchmarks.quality --tier quick``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
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


def quick_task_recipe(
    recipes: Path,
    task: str,
    methods: dict[str, dict[str, Any]],
    epochs: int,
    method: str,
    sparsity: float,
    seed: int,
    sparse_keys: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A task's ``cgap-quick`` recipe with ``method`` (one of ``methods``) in place of C-GaP.

    Every method gets the quick recipe's model, data and optimizer; a method whose run length is
    ``training.epochs`` (dense, GMP, RigL) gets ``epochs`` of training, while one whose schedule
    sets it (C-GaP / P-GaP: their phases) has that key dropped, so that every method has the same
    epochs of compute. `sparse_keys`: method keys every sparse method gets (e.g. its targets).
    """
    import copy

    import yaml

    from growprune.methods import schedule_epochs_of

    recipe = yaml.safe_load((recipes / "cgap-quick.yaml").read_text())
    spec = copy.deepcopy(methods[method])
    if method != "dense":
        spec.update({"sparsity": sparsity, **(sparse_keys or {})})
    recipe["method"] = spec
    recipe["name"] = f"{task}-quick-{method}-{int(round(sparsity * 100))}"
    training = recipe.setdefault("training", {})
    training["seed"] = seed
    if schedule_epochs_of(spec) is None:
        training["epochs"] = epochs
    else:
        training.pop("epochs", None)
    return recipe


def full_task_recipe(recipes: Path, method: str, sparsity: float, seed: int) -> dict[str, Any]:
    """A task's bundled recipe for ``method`` at ``sparsity`` (``dense.yaml`` for dense), reseeded."""
    import yaml

    name = "dense" if method == "dense" else f"{method}-{int(round(sparsity * 100))}"
    recipe = yaml.safe_load((recipes / f"{name}.yaml").read_text())
    recipe["training"]["seed"] = seed
    return recipe
