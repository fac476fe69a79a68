"""End-to-end CLI behaviour: bundled recipes under --smoke, one-line errors, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from growprune.report.run import load_run
from growprune.tasks.registry import TASKS, bundled_recipes, task_for_dataset
from tests.helpers import GROWPRUNE, gap_method, run_captured, start_train

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_captured([*GROWPRUNE, *args], env=ENV, timeout=timeout)


def write_recipe(path: Path, **sections: dict) -> Path:
    recipe = {
        "name": "test",
        "data": {"name": "synthetic", "args": {"n_train": 2048, "n_test": 512, "dim": 32}},
        "model": {"name": "mlp", "args": {"hidden": [64, 64]}},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "method": gap_method("cgap", partitions=3),
        "training": {"batch_size": 32, "seed": 0, "deterministic": True, "threads": 1, "log_every": 10},
        "output": {"tensorboard": False, "report": False, "checkpoint_every_steps": 20, "keep_last": 2},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(recipe))
    return path


# Recipes whose smoke runs the same code as another bundled recipe kept in the default suite, so
# that the default suite stays under 15 minutes on 2 cores (`make test-slow` runs them): the 90%
# twin of every 80% recipe (only the sparsity differs) except Fashion-MNIST C-GaP and RigL at 90%
# (the cases whose smokes once depended on the CPU's kernels); for translation, detection and part
# segmentation every method recipe but cgap-quick and dense (each method's schedule runs in the
# Fashion-MNIST smokes; each task's data, model, loss and metric in its cgap-quick and dense ones).
SLOW_SMOKES = ("-90.yaml", "translation/cgap-k", "translation/gmp", "translation/pgap", "translation/rigl")
SLOW_SMOKES += ("detection/cgap-80", "detection/gmp", "detection/pgap", "detection/rigl")
SLOW_SMOKES += ("partseg/cgap-80", "partseg/gmp", "partseg/pgap", "partseg/rigl")
SLOW_SMOKES += ("translation/cgap-quick-fsdp",)  # in one process it is cgap-quick (nothing to shard)
# Each task's dense recipe (its data, model, loss and metric run in its cgap-quick smoke) and the
# Fashion-MNIST SET, one-shot and ADMM recipes (their schedules in tests/methods and the engine's
# method-agnostic loop in the other smokes): the suite measured 1,152 s on 2 cores with them.
SLOW_SMOKES += ("translation/dense", "detection/dense", "partseg/dense")
SLOW_SMOKES += ("fmnist/set-80", "fmnist/oneshot-80", "fmnist/admm-80")
# C-GaP's and RigL's 80% recipes run the code of their 90% twins kept below (the kernel-sensitive
# ones) and of cgap-quick: ~35 s of the default suite on 2 idle cores.
SLOW_SMOKES += ("fmnist/cgap-80", "fmnist/rigl-80")
# Fashion-MNIST GMP, P-GaP and dense (~43 s of the default suite on 2 cores, which measured 951 s
# with them): GMP's and P-GaP's runs through the engine stay in tests/train/test_kill_resume.py and
# tests/train/test_distributed.py, the classification data and model in the other smokes.
SLOW_SMOKES += ("fmnist/gmp-80", "fmnist/pgap-80", "fmnist/dense")
# Language modelling: every recipe but cgap-quick (its data, model, loss, perplexity and samples run
# there; the others differ in the method and a larger model).
SLOW_SMOKES += (
    "lm/dense",
    "lm/oneshot",
    "lm/gmp",
    "lm/rigl",
    "lm/cgap-24",
    "lm/cgap-50",
    "lm/cgap-80",
    "lm/pgap",
)
KEPT_SMOKES = ("fmnist/cgap-90.yaml", "fmnist/rigl-90.yaml")


def smoke_cases() -> list[object]:
    cases = []
    for stem, recipe in bundled_recipes().items():
        name = f"{stem}.yaml"
        slow = any(part in name for part in SLOW_SMOKES) and name not in KEPT_SMOKES
        cases.append(pytest.param(recipe, id=name, marks=[pytest.mark.slow] if slow else []))
    return cases


@pytest.mark.trajectory
@pytest.mark.parametrize("recipe", smoke_cases())
def test_every_bundled_recipe_passes_smoke(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Generous: under ATEN_CPU_CAPABILITY=default (make test-kernels) on a loaded CI machine a
    # translation smoke takes several minutes; the limit only has to catch a hang.
    result = run_cli("train", str(recipe), "--smoke", "--out", str(out), "--no-progress", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    # Results on stdout, the run directory (and progress, logs) on stderr.
    labels = [line.partition(": ")[0] for line in result.stdout.splitlines()]
    assert labels == ["done", "report"], result.stdout
    assert f"run directory: {out}" in result.stderr and "done: " not in result.stderr
    assert (out / "report" / "report.md").is_file()
    kernels = torch.backends.cpu.get_cpu_capability()  # under ATEN_CPU_CAPABILITY, the kernels asked for
    report = (out / "report" / "report.md").read_text()
    assert f"| computed on | cpu, {kernels} kernels, " in report
    # the run names its task; the report heads its summary with the task's scores and has its section
    run = load_run(out)
    spec = TASKS[run.start.task]
    assert spec is task_for_dataset(yaml.safe_load((out / "recipe.yaml").read_text())["data"]["name"])
    headline = spec.summary[0].label
    assert f"| {headline} | " in report and "n/a" not in report.split(headline)[1][:12]
    section = spec.report_section(out, run.epochs, run.final)
    assert (section[0] in report) if section else spec.section is None
    assert (out / "checkpoints" / "final.pt").is_file()
    final = [
        r
        for r in map(yaml.safe_load, (out / "metrics.jsonl").read_text().splitlines())
        if r["type"] == "final"
    ]
    target = yaml.safe_load((out / "recipe.yaml").read_text())["method"]["sparsity"]
    assert final and final[0]["sparsity"] >= target - 1e-3
    assert final[0]["peak_rss_mib"] > 0 and final[0]["peak_rss_above_start_mib"] >= 0


# Compact storage over the bundled Fashion-MNIST recipes: C-GaP's quick recipe in the default suite
# (8 s), the others behind slow (make test-slow; RigL's and GMP's compact runs through the engine
# are also in tests/train/test_kill_resume.py and tests/methods/test_compact_storage.py).
COMPACT_KEPT = ("fmnist/cgap-quick.yaml",)


def compact_cases() -> list[object]:
    cases = []
    for stem, recipe in bundled_recipes().items():
        name = f"{stem}.yaml"
        if name.startswith("fmnist/"):
            marks = [] if name in COMPACT_KEPT else [pytest.mark.slow]
            cases.append(pytest.param(recipe, id=name, marks=marks))
    return cases


@pytest.mark.parametrize("recipe", compact_cases())
def test_bundled_fmnist_recipes_train_in_compact_storage(recipe: Path, tmp_path: Path) -> None:
    """``--set method.storage=compact``: the run ends at its target and reports its peak memory."""
    out = tmp_path / "run"
    args = ("--smoke", "--set", "method.storage=compact", "--out", str(out), "--no-progress")
    result = run_cli("train", str(recipe), *args, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert yaml.safe_load((out / "recipe.yaml").read_text())["method"]["storage"] == "compact"
    records = [yaml.safe_load(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (final,) = [r for r in records if r["type"] == "final"]
    target = yaml.safe_load((out / "recipe.yaml").read_text())["method"]["sparsity"]
    assert final["sparsity"] >= target - 1e-3 and final["peak_rss_mib"] > 0
    report = (out / "report" / "report.md").read_text()
    assert "| peak memory | " in report and "compact storage |" in report


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"method": {"sparsty": 0.9}}, "did you mean 'sparsity'"),
        ({"method": {"sparsity": 1.5}}, "method.sparsity"),
        ({"training": {"batch_size": "big"}}, "training.batch_size"),
        (
            {"data": {"data_dir": "/nonexistent/fmnist", "name": "fashion_mnist", "args": {}}},
            "apt-get install",
        ),
        ({"method": {"name": "cgapp"}}, "did you mean 'cgap'"),
    ],
)
def test_invalid_recipes_fail_with_one_line(tmp_path: Path, change: dict, expected: str) -> None:
    recipe = write_recipe(tmp_path / "bad.yaml", **change)
    result = run_cli("train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_list_shows_methods_models_and_recipes() -> None:
    result = run_cli("list")
    assert result.returncode == 0
    for word in ("cgap", "rigl", "small_cnn", "fashion_mnist", "fmnist/cgap-quick"):
        assert word in result.stdout


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["model"]


@pytest.mark.trajectory
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path / "r.yaml",
        data={"args": {"n_train": 8192, "n_test": 256, "dim": 32}},
        # Dropout draws from the global generator, so bitwise equality needs the RNG restored too.
        model={"args": {"hidden": [512, 512], "dropout": 0.1}},
    )
    reference = tmp_path / "reference"
    assert run_cli("train", str(recipe), "--out", str(reference), "--no-progress").returncode == 0

    killed = tmp_path / "killed"
    proc = start_train(recipe, killed, ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((killed / "checkpoints").glob("ckpt-*.pt"))[1:]:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / "final.pt").exists(), "run finished before it could be killed"

    resumed = run_cli("train", "--resume", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    expected, got = _final_weights(reference), _final_weights(killed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # The epoch that was cut reports all its batches, not only those after the resume.
    assert _epoch_train_losses(killed) == _epoch_train_losses(reference)


def _epoch_train_losses(run_dir: Path) -> dict[float, tuple[float, float]]:
    """Each epoch's (train_loss, train_acc), the last record of an epoch logged twice winning."""
    records = map(yaml.safe_load, (run_dir / "metrics.jsonl").read_text().splitlines())
    return {r["epoch"]: (r["train_loss"], r["train_acc"]) for r in records if r["type"] == "epoch"}


def test_corrupt_last_checkpoint_falls_back_to_previous(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml")
    run_dir = tmp_path / "run"
    assert run_cli("train", str(recipe), "--out", str(run_dir), "--no-progress").returncode == 0
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))
    assert len(checkpoints) == 2
    (run_dir / "checkpoints" / "final.pt").unlink()
    data = checkpoints[-1].read_bytes()
    checkpoints[-1].write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    result = run_cli("train", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoints[-1].name in result.stderr and "corrupt" in result.stderr
    assert f"resumed from {checkpoints[-2]}" in result.stderr


def test_resume_refuses_incompatible_recipe(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml")
    run_dir = tmp_path / "run"
    assert run_cli("train", str(recipe), "--out", str(run_dir), "--no-progress").returncode == 0
    result = run_cli(
        "train", str(recipe), "--resume", str(run_dir), "--set", "method.sparsity=0.9", "--no-progress"
    )
    assert result.returncode != 0
    assert "method.sparsity" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_stop_signal_writes_checkpoint_and_exits_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    recipe = write_recipe(
        tmp_path / "r.yaml",
        output={"checkpoint_every_steps": 100000},
        data={"args": {"n_train": 20000, "n_test": 256, "dim": 32}},
        model={"args": {"hidden": [512, 512]}},
    )
    run_dir = tmp_path / "run"
    proc = start_train(recipe, run_dir, ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run_dir / "metrics.jsonl").is_file():
        time.sleep(0.01)
    while time.monotonic() < deadline and '"step"' not in (run_dir / "metrics.jsonl").read_text():
        time.sleep(0.01)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.fail("run finished before the signal arrived; make the test run longer")
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    assert list((run_dir / "checkpoints").glob("ckpt-*.pt"))


def test_nan_loss_stops_with_step_and_phase(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", optimizer={"lr": 1.0e12, "momentum": 0.9})
    result = run_cli("train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at step ") and "partition" in last
    assert "the training loss is nan" in last or "the training loss is inf" in last


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["--set", "method.prune_epoch=100"], "oneshot: prune_step="),
        (
            ["--set", "training.epochs=2", "--set", "method.start_epoch=0", "--set", "method.end_epoch=100"],
            "gmp: end_step=",
        ),
    ],
)
def test_schedule_beyond_the_run_is_refused(tmp_path: Path, overrides: list[str], expected: str) -> None:
    """A method schedule that ends after the run would never reach its sparsity (it used to exit 0)."""
    recipe = "fmnist/oneshot-80" if "prune_epoch" in overrides[1] else "fmnist/gmp-80"
    result = run_cli("train", recipe, "--smoke", *overrides, "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "does not fit in the run" in lines[0] and expected in lines[0], result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
