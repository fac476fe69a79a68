"""The task benchmarks (detection, part segmentation, translation): one TaskBenchmark each.

The fast tests check what the benchmark asks the registries and the bundled recipes for; the slow
ones run each benchmark's smoke tier end to end and render its rows in RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import detection, partseg, translation
from benchmarks.common import method_order, prunes, sets_own_length
from benchmarks.make_results import TASK_TABLES, task_section
from benchmarks.task_benchmark import TaskBenchmark
from growprune.methods import METHODS, schedule_epochs_of

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = [detection.BENCHMARK, partseg.BENCHMARK, translation.BENCHMARK]
SHARED = ("data", "model", "optimizer", "schedule", "evaluation")


def test_the_registry_orders_and_tells_methods_apart() -> None:
    assert [m for m in METHODS if not prunes(m)] == ["dense"]
    assert [m for m in METHODS if sets_own_length(m)] == ["cgap", "pgap"]
    assert method_order(["pgap", "rigl", "dense", "gmp"]) == ["dense", "gmp", "rigl", "pgap"]
    assert method_order(["pgap", "rigl", "dense", "cgap", "gmp"], lead_own_schedule=True) == [
        "dense",
        "cgap",
        "pgap",
        "gmp",
        "rigl",
    ]


@pytest.mark.parametrize("bench", BENCHMARKS, ids=lambda b: b.task)
def test_quick_recipes_compare_methods_on_one_setting(bench: TaskBenchmark) -> None:
    """Every method's quick recipe is cgap-quick's setting with the method's own section, and the
    same epochs of compute: what makes the quick table a comparison of methods."""
    assert bench.methods() == ("dense", "cgap", "pgap", "gmp", "rigl")
    reference = bench.quick_recipe("cgap", 0.9, 2)
    budget = schedule_epochs_of(reference["method"])
    assert budget is not None
    for method in bench.methods():
        recipe = bench.quick_recipe(method, 0.9, 2)
        assert recipe["method"]["name"] == method and recipe["training"]["seed"] == 2
        assert {k: recipe.get(k) for k in SHARED} == {k: reference.get(k) for k in SHARED}, method
        assert recipe["method"].get("sparsity") == (0.9 if prunes(method) else None)
        epochs = schedule_epochs_of(recipe["method"])
        if epochs is None:
            epochs = recipe["training"]["epochs"]
        else:
            assert "epochs" not in recipe["training"]
        # P-GaP's K workers each train the phases: K x its schedule is its compute
        workers = len(recipe["method"]["partitions"]) if METHODS[method].loop == "rounds" else 1
        parallel = recipe["method"].get("rounds", 1) * recipe["method"].get("epochs_per_phase", 0)
        assert epochs + (workers - 1) * parallel == budget, method
        assert recipe["name"] == f"{bench.task}-quick-{method}-90"
    assert bench.quick_recipe("cgap", 0.9, 0) != bench.quick_recipe("cgap", 0.8, 0)  # no shared state


@pytest.mark.parametrize("bench", BENCHMARKS, ids=lambda b: b.task)
def test_full_recipes_and_jobs(bench: TaskBenchmark) -> None:
    for method in bench.methods():
        recipe = bench.full_recipe(method, 0.9, 4)
        assert recipe["method"]["name"] == method and recipe["training"]["seed"] == 4
        assert recipe["method"].get("sparsity", 0.0) == (0.9 if prunes(method) else 0.0)
    with pytest.raises(SystemExit, match="no bundled"):
        bench.full_recipe("gmp", 0.85, 0)
    jobs = bench.jobs(["dense", "gmp"], [0.8, 0.9], 2)
    assert jobs == [("dense", 0.0, 0), ("gmp", 0.8, 0), ("gmp", 0.9, 0)] + [
        ("dense", 0.0, 1),
        ("gmp", 0.8, 1),
        ("gmp", 0.9, 1),
    ]
    args = bench.parser().parse_args(["--set", "optimizer.lr=0.02"])
    assert args.methods == list(bench.methods()) and args.set == ["optimizer.lr=0.02"]


def _check_detection(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["generated"] is True and row["lr"] == 0.02
        assert 0.0 <= row["val_map75"] <= row["val_map50"] <= 1.0 and 0.0 <= row["val_map"] <= 1.0
    table = task_section([{**r, "tier": "quick"} for r in rows], TASK_TABLES["detection"])
    assert "generated shapes set" in table and "--set optimizer.lr=0.02" in table and "SGD lr 0.02" in table


def _check_partseg(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["generated"] is True and row["points"] == 512
        assert 0.0 <= row["test_instance_miou"] <= 1.0 and 0.0 <= row["test_class_miou"] <= 1.0


def _check_translation(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert 0.0 <= row["test_bleu"] <= 100.0 and row["threads"] == 1 and row["beam_size"] == 4
        assert len(row["examples"]) == 3 and {"reference", "hypothesis"} <= set(row["examples"][0])


SMOKES: dict[str, tuple[list[str], dict[str, str], Callable[[list[dict[str, Any]]], None]]] = {
    # flags, environment (the generated data, whatever the caller's environment says), checks
    "detection": (["--set", "optimizer.lr=0.02"], {"GROWPRUNE_COCO": ""}, _check_detection),
    "partseg": ([], {"GROWPRUNE_SHAPENET_PART": ""}, _check_partseg),
    "translation": (["--threads", "1"], {}, _check_translation),
}


@pytest.mark.slow  # a task benchmark's smoke: minutes of CPU; `make test-slow` runs it
@pytest.mark.parametrize("task", sorted(SMOKES))
def test_smoke_rows(task: str, tmp_path: Path) -> None:
    flags, environment, check = SMOKES[task]
    out = tmp_path / f"{task}.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GROWPRUNE_CACHE": str(tmp_path / "cache"), **environment}
    env = {k: v for k, v in env.items() if k != "GROWPRUNE_COCO" or v}  # an empty one is no folder
    cmd = [sys.executable, "-m", f"benchmarks.{task}", "--smoke", "--out", str(out), *flags]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["method"] for r in rows] == ["dense", "cgap"]
    for row in rows:
        assert row["tier"] == "smoke" and row["device"] and row["commit"] and row["train_seconds"] > 0
    assert rows[0]["final_sparsity"] == 0.0 and abs(rows[1]["final_sparsity"] - 0.8) < 1e-3
    check(rows)
    # smoke rows never reach RESULTS.md; the same rows relabelled as a tier do
    assert "No runs recorded yet" in task_section(rows, TASK_TABLES[task])
    table = task_section([{**r, "tier": "quick"} for r in rows], TASK_TABLES[task])
    assert "| cgap |" in table and "| dense |" in table and f"benchmarks.{task} --tier quick" in table
