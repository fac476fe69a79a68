"""One training run through the engine in a fresh Python process, for the task benchmarks.

A fresh process per run keeps one run's threads, caches and allocator state out of the next
run's time, and lets ``OMP_NUM_THREADS`` fix the thread count before torch is imported. The child
prints the run's final record (plus the epochs, where its data came from and, when asked, the
task's example outputs) as one JSON line. Every benchmark that trains through the engine in a
subprocess uses this runner (the quality benchmark's child adds the rigl-torch peer's loop).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT


def child_main(payload: str) -> None:
    """Run the recipe in ``payload`` in a temporary directory and print its final record as JSON."""
    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    job = json.loads(payload)
    recipe = job["recipe"]
    if job["threads"]:
        recipe.setdefault("training", {})["threads"] = job["threads"]
    recipe.setdefault("output", {}).update({"tensorboard": False, "report": False})
    parsed = validate_recipe(recipe)
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
        trainer = Trainer(parsed, Path(tmp) / "run", smoke=job["smoke"], progress=False)
        final = trainer.run()
        data = trainer.task.data  # type: ignore[attr-defined]
        examples = trainer.task.example_rows()[: job["examples"]] if job["examples"] else None
        if job.get("keep"):  # the final checkpoint, for what a benchmark does with the model next
            keep = Path(job["keep"])
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "run" / "checkpoints" / "final.pt", keep)
    final.pop("layers", None)
    facts = {
        "epochs": parsed.training.epochs,
        "data_root": str(getattr(data, "root", "")),
        "generated": getattr(data, "generated", None),
        **({"examples": examples} if examples is not None else {}),
    }
    print(json.dumps({**final, **facts}))


def child_environment(threads: int | None) -> dict[str, str]:
    """The environment of a benchmark's child process: this checkout importable, and
    ``OMP_NUM_THREADS`` fixed before torch is imported when ``threads`` is given."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_child_process(
    argv: list[str], env: dict[str, str], name: str, log: Path | None = None
) -> dict[str, Any]:
    """Run a benchmark's child process; the JSON object on the last line of its stdout.

    ``log``: where to keep the child's stderr and stdout. Raises:
        RuntimeError: the run failed; the message names it and holds the end of its stderr.
    """
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if log is not None:
        log.write_text(proc.stderr + proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_in_child(
    recipe: dict[str, Any], smoke: bool, threads: int | None = 1, examples: int = 0, keep: Path | None = None
) -> dict[str, Any]:
    """The final record of ``recipe`` trained in a child process with ``threads`` threads (None:
    torch's default), with the first ``examples`` of the task's example outputs; ``keep``: where
    to copy the run's final checkpoint (``checkpoints/final.pt``).

    Raises:
        RuntimeError: the run failed; the message holds the end of its stderr.
    """
    job = json.dumps(
        {
            "recipe": recipe,
            "smoke": smoke,
            "threads": threads,
            "examples": examples,
            "keep": str(keep) if keep else None,
        }
    )
    argv = [sys.executable, "-m", "benchmarks.engine_child", job]
    return run_child_process(argv, child_environment(threads), recipe["name"])


if __name__ == "__main__":
    child_main(sys.argv[1])
