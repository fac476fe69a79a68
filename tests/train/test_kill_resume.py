"""Every checkpoint the loop writes resumes like the uninterrupted run, and a run directory is
trained in by one process at a time.

The kills are real: the training runs in a subprocess (``DIE``) that sends itself SIGKILL right
after the first checkpoint written at a chosen step. For a step that ends an epoch that is the
step checkpoint, taken after the epoch's last batch and before its end (evaluation, epoch
record, the epoch's checkpoint) -- the checkpoint older versions refused to resume from.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from growprune.files import temp_name
from growprune.train.lock import LOCK_NAME, RunDirectoryLocked
from growprune.train.memory import PEAK_MEMORY_FIELDS
from tests.helpers import GROWPRUNE, REPO, gap_method, run_captured

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}

# Runs the command, killing itself with SIGKILL after the first checkpoint saved at step argv[1].
DIE = """
import os, signal, sys
from growprune.train import engine

target = int(sys.argv[1])
save = engine.Trainer.save_checkpoint

def save_then_die(self):
    path = save(self)
    if self.step == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return path

engine.Trainer.save_checkpoint = save_then_die
from growprune.cli import main
sys.exit(main(sys.argv[2:]))
"""

# 256 examples in batches of 32: 8 steps an epoch; a step checkpoint every 4 steps.
RECIPE = {
    "name": "kill",
    "data": {"name": "synthetic", "args": {"n_train": 256, "n_test": 128, "dim": 16}},
    # dropout draws from the global generator: bitwise equality needs the RNG state restored too
    "model": {"name": "mlp", "args": {"hidden": [32], "dropout": 0.1}},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "method": {"name": "gmp", "sparsity": 0.8, "start_epoch": 0, "end_epoch": 2},
    "training": {"batch_size": 32, "epochs": 3, "deterministic": True, "threads": 1, "log_every": 2},
    "output": {"tensorboard": False, "report": False, "checkpoint_every_steps": 4, "keep_last": 3},
}
# P-GaP (the rounds loop): 2 rounds of one epoch, then 2 epochs of fine-tuning in the step loop.
PGAP = {
    "method": gap_method("pgap", partitions=2, rounds=2, finetune_epochs=2),
    "training": {"epochs": 4},
}

# Compact storage (method.storage: compact): layers change shape at every mask change, and the
# checkpoints hold their dense weights and the values' optimizer state; a resume is still exact.
GMP_COMPACT = {"method": {**RECIPE["method"], "storage": "compact"}}
CGAP_COMPACT = {"method": gap_method("cgap", partitions=2, storage="compact")}


def cli(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", script, *args] if script else [*GROWPRUNE, *args]
    return run_captured(command, env=ENV)


def write_recipe(path: Path, **sections: dict) -> Path:
    recipe = {key: dict(value) if isinstance(value, dict) else value for key, value in RECIPE.items()}
    for key, value in sections.items():
        recipe[key] = value if key == "method" else {**recipe[key], **value}
    path.write_text(yaml.safe_dump(recipe))
    return path


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["model"]


def records(run_dir: Path) -> list[dict]:
    """The run's records without the wall-clock fields (which differ between any two runs)."""
    found = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = yaml.safe_load(line)
        # measurements of the process, not of the run: they differ between any two processes
        for key in ("time", "train_seconds", "merge_seconds", "wait_seconds", *PEAK_MEMORY_FIELDS):
            record.pop(key, None)
        found.append(record)
    return found


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def set_position_batch(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    payload["position"]["batch"] = 10**6
    torch.save(payload, path)


def make_non_finite(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    next(iter(payload["model"].values())).fill_(float("inf"))
    torch.save(payload, path)


def no_damage(path: Path) -> None:
    del path


# (id, recipe sections replaced (none: GMP), kill after the first checkpoint of this step, damage done to
# the newest checkpoint then, the checkpoint the resume must use)
CASES: list[tuple[str, dict, int, Callable[[Path], None], int]] = [
    ("end-of-epoch-1", {}, 8, no_damage, 8),
    ("end-of-epoch-2", {}, 16, no_damage, 16),
    ("mid-epoch", {}, 12, no_damage, 12),
    ("after-the-last-epoch", {}, 24, no_damage, 24),
    ("end-of-epoch-then-truncated", {}, 16, truncate, 12),
    ("end-of-epoch-then-position-outside", {}, 16, set_position_batch, 12),
    ("end-of-epoch-then-non-finite", {}, 8, make_non_finite, 4),
    ("pgap-end-of-finetune-epoch", PGAP, 24, no_damage, 24),
    ("compact-gmp-mid-epoch", GMP_COMPACT, 12, no_damage, 12),
    ("compact-cgap-end-of-phase", CGAP_COMPACT, 8, no_damage, 8),
    ("compact-cgap-mid-phase-then-truncated", CGAP_COMPACT, 16, truncate, 12),
]
# Variants of a case the default suite keeps (another position in the same loop, another damage
# of the same kind): `make test-slow` runs them, the default suite stays under 15 minutes.
SLOW_CASES = {
    "end-of-epoch-2",
    "after-the-last-epoch",
    "end-of-epoch-then-position-outside",
    "compact-gmp-mid-epoch",
    "compact-cgap-mid-phase-then-truncated",
}


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict], Path]:
    """The uninterrupted run of each recipe, trained once."""
    root = tmp_path_factory.mktemp("reference")
    done: dict[str, Path] = {}

    def reference(sections: dict) -> Path:
        method = sections.get("method", RECIPE["method"])
        key = f"{method['name']}-{method.get('storage', 'masked')}"
        if key not in done:
            recipe = write_recipe(root / f"{key}.yaml", **sections)
            result = cli("train", str(recipe), "--out", str(root / key), "--no-progress")
            assert result.returncode == 0, result.stderr[-2000:]
            done[key] = root / key
        return done[key]

    return reference


@pytest.mark.parametrize(
    ("sections", "kill_step", "damage", "used"),
    [pytest.param(*c[1:], id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW_CASES else []) for c in CASES],
)
def test_killed_run_resumes_like_the_uninterrupted_one(
    tmp_path: Path,
    references: Callable[[dict], Path],
    sections: dict,
    kill_step: int,
    damage: Callable[[Path], None],
    used: int,
) -> None:
    reference = references(sections)
    recipe = write_recipe(tmp_path / "r.yaml", **sections)
    run_dir = tmp_path / "run"
    killed = cli(str(kill_step), "train", str(recipe), "--out", str(run_dir), "--no-progress", script=DIE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoints = run_dir / "checkpoints"
    newest = checkpoints / f"ckpt-{kill_step:08d}.pt"
    assert newest.is_file() and not (checkpoints / "final.pt").exists()
    damage(newest)
    # what a kill in the middle of a write leaves behind, removed at the resume
    stale = [checkpoints / temp_name("ckpt-00000099.pt", "0123abcd"), run_dir / temp_name("x", "deadbeef")]
    for path in stale:
        path.write_bytes(b"partial")
    (run_dir / ".keep.tmp").write_text("not ours")

    resumed = cli("train", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    used_path = checkpoints / f"ckpt-{used:08d}.pt"
    assert f"resumed from {used_path} " in resumed.stderr, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    if used != kill_step:  # one line naming the checkpoint skipped and the one used instead
        assert len(warnings) == 1 and newest.name in warnings[0] and str(used_path) in warnings[0], warnings
    else:
        assert not warnings, warnings
    assert not any(path.exists() for path in stale) and (run_dir / ".keep.tmp").exists()

    expected, got = final_model(reference), final_model(run_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # the same records, each once: the epoch ended at the resume is logged as it would have been
    assert records(run_dir) == records(reference)


def test_no_usable_checkpoint_names_each_reason(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml")
    run_dir = tmp_path / "run"
    assert cli("16", "train", str(recipe), "--out", str(run_dir), "--no-progress", script=DIE).returncode < 0
    truncate(run_dir / "checkpoints" / "ckpt-00000016.pt")
    for path in sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[:-1]:
        set_position_batch(path)
    result = cli("train", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no usable checkpoint"), lines
    assert "corrupt or truncated" in lines[0] and "outside this run" in lines[0]


# -- the run directory's lock -------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from growprune.train.lock import lock_run_dir

lock = lock_run_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(run_dir: Path) -> subprocess.Popen[str]:
    """Another process holding the run directory's lock until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("locked")
    recipe = write_recipe(root / "r.yaml")
    assert cli("train", str(recipe), "--out", str(root / "run"), "--no-progress").returncode == 0
    return root / "run"


# (id, the second command's arguments given the run directory and the recipe, what the line says)
LOCK_CASES = [
    ("train-into-it", lambda run, recipe: ["train", str(recipe), "--out", str(run)], "before you train"),
    ("resume-it", lambda run, recipe: ["train", "--resume", str(run)], "before you resume"),
]


@pytest.mark.parametrize(("second", "fragment"), [c[1:] for c in LOCK_CASES], ids=[c[0] for c in LOCK_CASES])
def test_second_process_is_refused_and_writes_nothing(
    tmp_path: Path, finished: Path, second: Callable[[Path, Path], list[str]], fragment: str
) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    holder = hold_lock(run_dir)
    try:
        before = snapshot(run_dir)
        time.sleep(0.01)  # a write now would show in the modification times
        result = cli(*second(run_dir, run_dir / "recipe.yaml"), "--no-progress")
        after = snapshot(run_dir)
    finally:
        holder.kill()
        holder.wait()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: run directory {run_dir} is in use"), lines
    assert f"pid {holder.pid} on " in lines[0] and fragment in lines[0], lines
    assert after == before


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    """kill -9 leaves the lock file, not the lock: the run resumes and finishes."""
    recipe = write_recipe(tmp_path / "r.yaml")
    run_dir = tmp_path / "run"
    killed = cli("8", "train", str(recipe), "--out", str(run_dir), "--no-progress", script=DIE)
    assert killed.returncode == -signal.SIGKILL and (run_dir / LOCK_NAME).is_file()
    holder = hold_lock(run_dir)  # and a second holder killed the same way
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    resumed = cli("train", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run_dir / "checkpoints" / "final.pt").is_file()


def test_only_rank_zero_takes_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun all ranks share the directory; the other ranks must not fail on rank 0's lock."""
    import contextlib

    from growprune import cli as cli_module

    holder = hold_lock(tmp_path)
    try:
        monkeypatch.setenv("RANK", "1")
        with contextlib.ExitStack() as held:
            cli_module._lock(tmp_path, "train", held)  # no error: rank 1 does not lock
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunDirectoryLocked, match="is in use"), contextlib.ExitStack() as held:
            cli_module._lock(tmp_path, "train", held)
    finally:
        holder.kill()
        holder.wait()
