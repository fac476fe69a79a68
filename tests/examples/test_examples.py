"""Every script in examples/ runs as a user would run it and exits 0 (each checks its own result)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import run_captured, torchrun

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NEEDS = {"hf_trainer.py": ("transformers", "accelerate"), "lightning_fit.py": ("lightning",)}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "fsdp_loop.py",
        "hf_trainer.py",
        "lightning_fit.py",
        "plain_loop.py",
    ]


def run_example(command: list[str], tmp_path: Path, **env: str) -> str:
    """Run an example from an empty folder; it must exit 0 having printed the sparsity report."""
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "TMPDIR": str(tmp_path), **env}
    result = run_captured(command, env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "overall" in output  # the sparsity report was printed
    return output


@pytest.mark.trajectory
@pytest.mark.parametrize("script", ["plain_loop.py", "hf_trainer.py", "lightning_fit.py"])
def test_example_runs(script: str, tmp_path: Path) -> None:
    for package in NEEDS.get(script, ()):
        pytest.importorskip(package)
    output = run_example([sys.executable, str(EXAMPLES / script)], tmp_path)
    if script != "plain_loop.py":
        assert "resumed run equals the uninterrupted one: weights True, masks True" in output


@pytest.mark.trajectory
def test_fsdp_example_runs_on_two_ranks(tmp_path: Path) -> None:
    """As its docstring says to run it: torchrun, 2 processes (gloo on CPU)."""
    output = run_example([*torchrun(2), str(EXAMPLES / "fsdp_loop.py")], tmp_path, OMP_NUM_THREADS="1")
    assert "resumed run equals the uninterrupted one: masks True, report True" in output
