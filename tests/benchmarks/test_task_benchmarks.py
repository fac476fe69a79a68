"""The task benchmarks (detection, part segmentation, translation, lm): one TaskBenchmark each.

The fast tests check what the benchmark asks the registries and the bundled recipes for; the slow
ones run each benchmark's smoke tier end to end and render its rows in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import detection, lm, partseg, translation
from benchmarks.common import method_order, prunes, sets_own_length
from benchmarks.make_results import TASK_TABLES, task_section
from benchmarks.task_benchmark import TaskBenchmark, parse_target, target_sparsity
from growprune.methods import METHODS, schedule_epochs_of
from growprune.train.recipe import validate_recipe

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = [detection.BENCHMARK, lm.BENCHMARK, partseg.BENCHMARK, translation.BENCHMARK]
# the methods with a quick recipe: the lm task also compares one-shot magnitude pruning
QUICK_METHODS = {"lm": ("dense", "cgap", "pgap", "oneshot", "gmp", "rigl")}
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
    assert bench.methods() == QUICK_METHODS.get(bench.task, ("dense", "cgap", "pgap", "gmp", "rigl"))
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
    top = bench.sparsities[-1]  # the highest sparsity of the task's full recipes
    for method in bench.methods():
        recipe = bench.full_recipe(method, top, 4)
        assert recipe["method"]["name"] == method and recipe["training"]["seed"] == 4
        assert recipe["method"].get("sparsity", 0.0) == (top if prunes(method) else 0.0)
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


def test_targets_are_sparsities_or_nm_patterns() -> None:
    assert parse_target("0.8") == 0.8 and parse_target("2:4") == "2:4" and parse_target("02:08") == "2:8"
    assert target_sparsity("2:4") == 0.5 and target_sparsity(0.8) == 0.8
    for bad in ("4:2", "2:x", "1.5", "0", "half"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_target(bad)
    with pytest.raises(SystemExit):  # argparse's one-line usage error
        lm.BENCHMARK.parser().parse_args(["--sparsities", "3:2"])


def test_a_pattern_goes_to_the_methods_that_keep_one() -> None:
    """2:4 replaces the quick recipe's sparsity with the pattern; GMP and RigL cannot keep N:M
    masks (``supports_nm`` False), so a pattern makes no job of theirs."""
    bench = lm.BENCHMARK
    jobs = bench.jobs(["dense", "cgap", "gmp", "rigl"], [0.5, "2:4"], 1)
    assert jobs == [
        ("dense", 0.0, 0),
        ("cgap", 0.5, 0),
        ("cgap", "2:4", 0),
        ("gmp", 0.5, 0),
        ("rigl", 0.5, 0),
    ]
    for method in ("cgap", "pgap", "oneshot"):
        recipe = bench.quick_recipe(method, "2:4", 1)
        assert recipe["method"]["pattern"] == "2:4" and "sparsity" not in recipe["method"]
        assert recipe["name"] == f"lm-quick-{method}-24"
        validate_recipe(recipe)
        back = bench.quick_recipe(method, 0.8, 1)
        assert back["method"]["sparsity"] == 0.8 and "pattern" not in back["method"]
    assert bench.full_recipe("pgap", "2:4", 3)["method"]["pattern"] == "2:4"
    with pytest.raises(SystemExit, match="no bundled lm recipe trains gmp at 2:4"):
        bench.full_recipe("gmp", "2:4", 0)


def _lm_row(method: str, target: float | str, seed: int, ppl: float, **extra: Any) -> dict[str, Any]:
    row = {
        "tier": "quick",
        "model": "llama(hidden_size=128)",
        "context_length": 64,
        "method": method,
        "sparsity": target_sparsity(target),
        "seed": seed,
        "epochs": 1,
        "test_ppl": ppl,
        "train_seconds": 100.0,
        "commit": "abcdef1234",
        "device": "cpu",
        "threads": 1,
        "parallel_jobs": 2,
        **extra,
    }
    return {**row, "pattern": target} if isinstance(target, str) else row


def test_lm_table_has_pattern_columns_and_the_one_shot_pruners() -> None:
    oneshot = {"prune_seconds": 9.0, "method_config": {"calibration_blocks": 512}}
    rows = [
        *(_lm_row("dense", 0.0, seed, 40.0 + seed) for seed in (0, 1)),
        *(_lm_row("cgap", t, seed, 50.0 + seed) for t in (0.5, "2:4", 0.8) for seed in (0, 1)),
        *(_lm_row("gmp", t, 0, 60.0) for t in (0.5, 0.8)),
        *(_lm_row("sparsegpt", t, 0, 70.0, **oneshot) for t in (0.5, "2:4", 0.8)),
        _lm_row("wanda", 0.8, 0, 90.0, **oneshot),
    ]
    table = task_section(rows, TASK_TABLES["lm"])
    lines = table.splitlines()
    assert "| method | 50% sparsity | 2:4 (50%) | 80% sparsity |" in lines
    body = [line.split(" |")[0] for line in lines if line.startswith("| ") and "sparsity |" not in line]
    assert body == ["| dense", "| sparsegpt", "| wanda", "| cgap", "| gmp"]
    assert "| dense | 40.50 +- 0.71 (2 seeds) | 40.50 +- 0.71 (2 seeds) | 40.50 +- 0.71 (2 seeds) |" in lines
    assert "| gmp | 60.00 |  | 60.00 |" in lines and "| wanda |  |  | 90.00 |" in lines
    assert "--methods cgap dense gmp --sparsities 0.5 2:4 0.8 --seeds 2`" in table
    assert "512 calibration blocks, 9 s of pruning on average" in table


def test_lm_benchmark_names_the_missing_llm_compressor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = lm.BENCHMARK.main(
        ["--smoke", "--pruner-python", str(tmp_path / "none"), "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "make bench-llm" in err
    assert not (tmp_path / "r").exists()


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


def _check_lm(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert 1.0 < row["test_ppl"] < 2048 * 1.5 and row["context_length"] == 64 and row["threads"] == 1


def _check_translation(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert 0.0 <= row["test_bleu"] <= 100.0 and row["threads"] == 1 and row["beam_size"] == 4
        assert len(row["examples"]) == 3 and {"reference", "hypothesis"} <= set(row["examples"][0])


SMOKES: dict[str, tuple[list[str], dict[str, str], Callable[[list[dict[str, Any]]], None]]] = {
    # flags, environment (the generated data, whatever the caller's environment says), checks
    "detection": (["--set", "optimizer.lr=0.02"], {"GROWPRUNE_COCO": ""}, _check_detection),
    "lm": (["--pruners"], {}, _check_lm),  # the one-shot rows: tests/benchmarks/test_lm_oneshot.py
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
