"""The memory benchmark runs end to end on tiny models (each configuration in its own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.benchmarks.helpers import run_benchmark

METHODS = ("dense", "cgap", "rigl")  # a subset: every configuration is a fresh interpreter


# a minute of subprocesses: `make test-slow` runs it; test_other_sparsities_are_rows_of_their_own
# runs the benchmark end to end in the default suite
@pytest.mark.slow
def test_memory_smoke(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    result = run_benchmark("memory", "--smoke", "--out", str(out), "--methods", *METHODS, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]  # a failed row is in stdout
    data = json.loads(out.read_text())
    rows = {(r["model"], r["method"], r["storage"]): r for r in data["rows"]}
    expected = {(m, "dense", "masked") for m in ("mlp", "lm")}
    sparse = [k for k in METHODS if k != "dense"]
    expected |= {(m, k, s) for m in ("mlp", "lm") for k in sparse for s in ("masked", "compact")}
    assert set(rows) == expected
    for (_, method, storage), row in rows.items():
        assert "error" not in row, row
        assert row["peak_above_baseline_mib"] > 0 and row["step_ms"] > 0 and row["params"] > 0
        assert row["threads"] == 1 and row["steps"] == 3
        assert row["machine"]["cpu_kernels"] and row["load_average_at_start"] is not None
        if method == "dense":
            assert row["peak_ratio_to_dense"] == 1.0 and row["step_ratio_to_dense"] == 1.0
        else:
            assert row["peak_ratio_to_dense"] > 0 and row["step_ratio_to_dense"] > 0
            assert 0 < row["max_kept_fraction"] < 1
        if storage == "compact":
            assert row["peak_ratio_to_masked"] > 0 and row["step_ratio_to_masked"] > 0
    assert abs(rows[("mlp", "cgap", "masked")]["ideal_peak_fraction"] - 0.4) < 1e-9  # (1-r) + r/K
    assert abs(rows[("lm", "rigl", "compact")]["ideal_peak_fraction"] - 0.2) < 1e-9  # 1 - r
    assert data["command"].startswith("python -m benchmarks.memory --smoke")
    assert "ideal weight fraction" in result.stdout


@pytest.mark.slow  # 14 s; the smoke above runs the same benchmark at one sparsity
def test_other_sparsities_are_rows_of_their_own(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    args = ["--smoke", "--out", str(out), "--models", "mlp", "--methods", "rigl", "--storage", "compact"]
    result = run_benchmark("memory", *args, "--sparsities", "0.5", "0.9", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    levels = {r["method"]: [] for r in data["rows"]}
    for row in data["rows"]:
        levels[row["method"]].append(row["sparsity"])
    assert levels == {"dense": [0.0], "rigl": [0.5, 0.9]}
    rigl = [r for r in data["rows"] if r["method"] == "rigl"]
    assert [round(r["ideal_peak_fraction"], 9) for r in rigl] == [0.5, 0.1]
    assert "--sparsities 0.5 0.9" in data["command"]


def test_table_reads_rows() -> None:
    """The RESULTS.md section from hand-made rows: a failed configuration is shown, not dropped."""
    from benchmarks.memory import add_ratios, results_markdown

    def row(method: str, peak: float, ms: float, storage: str = "masked") -> dict:
        return {
            "model": "mlp",
            "method": method,
            "storage": storage,
            "sparsity": 0.0 if method == "dense" else 0.8,
            "model_description": "MLP",
            "params": 10,
            "prunable_params": 8,
            "steps": 4,
            "peak_above_baseline_mib": peak,
            "peak_above_warmup_mib": peak / 2,
            "steps_peak_above_baseline_mib": peak * 0.8,
            "step_ms": ms,
            "max_kept_fraction": 1.0,
            "peak_step": 2,
            "load_average_at_start": [3.0, 2.0, 1.0],
        }

    rows = [row("dense", 100.0, 10.0), row("gmp", 150.0, 12.0), row("gmp", 60.0, 9.0, "compact")]
    rows.append({"model": "mlp", "method": "admm", "storage": "masked", "steps": 4, "error": "boom"})
    add_ratios(rows)
    assert rows[1]["peak_ratio_to_dense"] == 1.5
    assert rows[2]["peak_ratio_to_masked"] == 0.4 and rows[2]["step_ratio_to_masked"] == 0.75
    machine = {"cpu": "x", "cpu_count": 2, "cpu_kernels": "AVX2", "torch": "2"}
    data = {"rows": rows, "models": ["mlp"], "machine": machine, "command": "c", "commit": "abc", "date": "d"}
    text = results_markdown(data)
    expected = "| gmp 80% | masked | 150 | 1.50 | - | 120 | 1.50 | 75 | 1.50 | 12 | 1.20 | - | 1 then 0.20 |"
    assert expected in text
    assert (
        "| gmp 80% | compact | 60 | 0.60 | 0.40 | 48 | 0.60 | 30 | 0.60 | 9 | 0.90 | 0.75 | 1 then 0.20 |"
        in text
    )
    assert "| admm 80% | masked | failed: boom |" in text
    assert "CPU kernels AVX2" in text


def test_peak_reached_after_the_last_reading_is_put_at_the_last_step() -> None:
    """The high-water mark can rise after the last step's reading; the row must not fail then."""
    from benchmarks.memory import step_of_peak

    assert step_of_peak([10.0, 20.0, 20.0], 20.0) == 2
    assert step_of_peak([10.0, 20.0, 20.0], 20.5) == 3
    assert step_of_peak([5.0], 5.0) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_device_without_a_gpu_is_one_line() -> None:
    result = run_benchmark("memory", "--smoke", "--out", "/nonexistent/m", "--device", "cuda", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --device cuda needs a CUDA build of torch and a GPU; none here"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_memory_smoke_on_cuda(tmp_path: Path) -> None:
    """On a GPU the rows measure torch.cuda.max_memory_allocated (benchmarks/gpu_suite.py runs the
    cuda tests); compact storage must hold less than masked storage there too."""
    out = tmp_path / "memory.json"
    args = ["--smoke", "--out", str(out), "--device", "cuda", "--methods", "dense", "cgap", "rigl"]
    result = run_benchmark("memory", *args, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["device"] == "cuda" for r in rows)
    assert all(r["measure"] == "torch.cuda.max_memory_allocated" for r in rows)
