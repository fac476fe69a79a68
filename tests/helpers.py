"""Helpers the test folders share: running growprune (or any script) in a child process, under
torchrun or not; the registries' error checks; a model with a matrix for each reason one stays
dense; the method sections of the small recipes the end-to-end tests write; the kill-and-resume
check and the refused-recipe check of the task tests' smoke runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from growprune.train.engine import Trainer
from growprune.train.recipe import Recipe, RecipeError, validate_recipe

REPO = Path(__file__).resolve().parents[1]
GROWPRUNE = (sys.executable, "-m", "growprune")


def torchrun(procs: int, *extra: str) -> list[str]:
    """The torchrun launcher for `procs` local processes, `extra` its further options; the script
    (or `-m module`) and its arguments follow."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc-per-node", str(procs), *extra]


def run_captured(
    command: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `command` to its end (in the repository by default), stdout and stderr captured as text."""
    return subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_train(
    recipe: Path, out: Path, env: Mapping[str, str], *launcher: str, **pipes: Any
) -> subprocess.Popen:
    """Start `growprune train RECIPE --out OUT --no-progress` in the background (under `launcher`,
    e.g. `torchrun(2)`, if given) for a test to signal or kill; `pipes` go to Popen (stdout=...)."""
    prefix = [*launcher, "-m", "growprune"] if launcher else list(GROWPRUNE)
    command = [*prefix, "train", str(recipe), "--out", str(out), "--no-progress"]
    return subprocess.Popen(command, cwd=REPO, env=env, **pipes)


def check_unknown_name(build: Callable[..., Any], kind: str, unknown: str, known: Sequence[str]) -> None:
    """A registry's `build(unknown)`: a ValueError naming the unknown `kind`, listing every known name."""
    with pytest.raises(ValueError, match=f"unknown {kind} '{unknown}'") as err:
        build(unknown)
    for name in known:
        assert name in str(err.value)


def check_misspelled_keyword(build: Callable[..., Any], name: str, typo: str, accepted: str) -> None:
    """A registry's `build(name, typo=...)` is a TypeError naming the misspelled keyword and listing
    the accepted ones (`accepted` among them)."""
    with pytest.raises(TypeError, match=typo) as err:
        build(name, **{typo: 2})
    assert accepted in str(err.value)


class Mixed(nn.Module):
    """One weight matrix for each reason a matrix stays dense (an embedding, an LSTM, a transposed
    convolution) next to a Linear layer `fc`: 8 -> 8 and a second one `fc2` 8 -> 4, or without
    `fc2`, `fc` alone 8 -> 4."""

    def __init__(self, fc2: bool = True) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.lstm = nn.LSTM(8, 8)
        self.up = nn.ConvTranspose1d(4, 4, 3)
        self.fc = nn.Linear(8, 8 if fc2 else 4)
        if fc2:
            self.fc2 = nn.Linear(8, 4)


def gap_method(name: str = "cgap", partitions: int = 3, rounds: int = 1, **extra: Any) -> dict[str, Any]:
    """A recipe's method section for C-GaP or P-GaP at 80%: one epoch a phase, one of fine-tuning
    unless `extra` says otherwise."""
    schedule = {"partitions": partitions, "epochs_per_phase": 1, "rounds": rounds, "finetune_epochs": 1}
    return {"name": name, "sparsity": 0.8, **schedule, **extra}


def check_resumes_exactly(recipe: Recipe, straight: Trainer, run_dir: Path) -> dict[str, Any]:
    """Train `recipe` (a smoke run) into `run_dir`, stopped after its first epoch as a kill would stop
    it, then resumed to the end: the resumed model equals `straight`'s (the same recipe trained
    without a stop) tensor for tensor. Returns the resumed run's final result, for the task's score."""
    first = Trainer(recipe, run_dir, smoke=True, progress=False)
    first.total_steps = first.steps_per_epoch
    first.run()
    resumed = Trainer(recipe, run_dir, smoke=True, resume=True, progress=False)
    again = resumed.run()
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    return again


def check_smoke_refused(data: dict[str, Any], run_dir: Path, match: str) -> None:
    """The recipe `data` validates but its smoke run is refused before training, with a RecipeError
    matching `match` (a mismatch between the task's data and the model, a bad data argument)."""
    with pytest.raises(RecipeError, match=match):
        Trainer(validate_recipe(data), run_dir, smoke=True, progress=False)
