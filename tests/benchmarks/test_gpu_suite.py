"""benchmarks/gpu_suite.py: its --smoke path runs every part on the CPU in under two minutes, its
--plan fits the 9 minutes and explains why, it refuses to start without CUDA, and its pool keeps
the deadline (what cannot finish is stopped or left, and said so)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.common import markers
from benchmarks.gpu_suite import CPU_SMOKE, Estimator, Job, Pool, exit_code
from benchmarks.inference import results_markdown, write_results_section
from tests.benchmarks.helpers import run_benchmark

REPO = Path(__file__).resolve().parents[2]
SUITE_RUNS = 33  # 3 seeds x (dense + 5 methods x 2 sparsities)


@pytest.mark.slow  # a minute of CPU; `make test-slow` runs it (and a GPU session runs the suite itself)
def test_smoke_runs_every_part_on_the_cpu(tmp_path: Path) -> None:
    committed = [REPO / "benchmarks" / "RESULTS.md", *(REPO / "benchmarks" / "results").iterdir()]
    stamps = {path: path.stat().st_mtime_ns for path in committed}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_suite.py", "--smoke", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seconds < 120, f"--smoke took {seconds:.0f} s"
    rows = [json.loads(line) for line in (tmp_path / "quality.jsonl").read_text().splitlines()]
    methods = {"dense", "gmp", "rigl", "cgap", "pgap"}
    if "rigl-torch" in {r["method"] for r in rows}:
        methods.add("rigl-torch")
    assert {r["method"] for r in rows} == methods and len(rows) == len(methods)
    for row in rows:
        assert row["tier"] == "full" and row["suite"] == "gpu_suite" and row["device"] == "cpu"
        assert row["precision"] == "bf16" and row["batch_size"] == 16
        assert row["channels_last"] is (row["method"] != "rigl-torch")  # rigl-torch needs contiguous
        assert abs(row["final_sparsity"] - (0.0 if row["method"] == "dense" else 0.8)) < 0.01
    summary = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert summary["exit_code"] == 0 and summary["smoke"] is True
    assert {j["status"] for j in summary["jobs"]} == {"done"}
    assert [j["kind"] for j in summary["jobs"]].count("tests") == 1
    assert summary["phases"]["inference"]["status"] == "done"
    assert summary["calibration"]["runs"] == len(rows)
    results_md = (tmp_path / "RESULTS.md").read_text()
    assert "**Tier `full`**: `small_cnn(width=4)`" in results_md
    assert "bf16 autocast; channels-last" in results_md
    assert all(m in results_md for m in markers("inference-cuda"))
    assert "## Sparse inference latency" in results_md.split(markers("inference-cuda")[0])[1]
    log = (tmp_path / "gpu_suite.log").read_text()
    assert "Exit code 0: everything done" in log and "GPU suite plan (--smoke" in log
    assert "CUDA tests skip, as they should" in log
    assert {path: path.stat().st_mtime_ns for path in committed} == stamps  # the committed results untouched


def test_plan_lists_the_runs_and_fits_in_nine_minutes(tmp_path: Path) -> None:
    # an empty --out-dir: no rows to skip, no earlier calibration
    result = run_benchmark("gpu_suite", "--plan", "--out-dir", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    runs = [line for line in text.splitlines() if " steps " in line and " est. " in line]
    assert len(runs) == SUITE_RUNS, text
    assert all("3510 steps" in line for line in runs)  # 30 epochs x 117 batches of 512, every method
    for method in ("dense-0-dense-s2", "rigl-torch-0.9-uniform-s2", "pgap-0.8-uniform-s1", "cuda-tests"):
        assert method in text
    assert "resnet20, 30 epochs, batch 512, lr 0.4, bf16, channels-last, fashion_mnist" in text
    assert "ops x 3 us + FLOP / 60 TFLOPS" in text and "Assumed rates" in text
    if not torch.cuda.is_available():  # the assumed H200-class machine
        assert "a pool of 15 concurrent processes" in text
        assert "of 9: fits" in text, text[-1500:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_refuses_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_suite.py", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: CUDA is not available") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def sleeper(name: str, sleep_s: float, estimate_s: float) -> Job:
    argv = [sys.executable, "-c", f"import time; time.sleep({sleep_s})"]
    return Job(name, "tests", argv, fixed_s=estimate_s)


def test_pool_keeps_the_deadline(tmp_path: Path) -> None:
    """A job that fits runs; one that overruns is stopped at the deadline; one estimated past the
    deadline is never started while a shorter one behind it is; all of it is reported."""
    jobs = [
        sleeper("quick", 0.2, 0.5),
        sleeper("overrun", 60, 1.0),
        sleeper("too-long", 0.2, 100.0),
        sleeper("fits-after", 0.2, 0.5),
    ]
    messages: list[str] = []

    def finished(job: Job) -> None:
        assert job.proc is not None
        job.status = "done" if job.proc.returncode == 0 else "failed"

    started = time.monotonic()
    pool = Pool(2, started + 3.0, Estimator(CPU_SMOKE), tmp_path, messages.append, finished, poll_s=0.05)
    pool.run(jobs)
    assert time.monotonic() - started < 8
    assert [j.status for j in jobs] == ["done", "stopped", "left", "done"]
    assert "stopped at the deadline" in jobs[1].detail and "estimated 100 s" in jobs[2].detail
    assert jobs[1].proc is not None and jobs[1].proc.poll() is not None  # really ended
    assert any(m.startswith("stop   overrun") for m in messages)
    assert exit_code(jobs, {"inference": {"status": "done"}}) == 3
    jobs[0].status = "failed"
    assert exit_code(jobs, {}) == 1
    assert exit_code(jobs[3:], {"inference": {"status": "failed"}}) == 1
    assert exit_code(jobs[3:], {}) == 0


def test_estimator_calibrates_on_finished_runs() -> None:
    estimator = Estimator(CPU_SMOKE)
    job = Job("run", "train", [], host_s=10.0, device_s=0.0, steps=100)
    assert estimator.seconds(job, 1) == pytest.approx(CPU_SMOKE.start_s + 10.0)
    job.result, job.concurrency, job.started, job.ended = {"train_seconds": 20.0}, [1, 1], 1.0, 26.0
    estimator.observe(job)
    assert estimator.calibration == pytest.approx(2.0) and estimator.start_s == pytest.approx(5.0)
    assert estimator.seconds(job, 1) == pytest.approx(5.0 + 20.0)


def test_inference_rows_of_a_gpu_go_to_their_own_section(tmp_path: Path) -> None:
    row = {
        "device": "cuda",
        "dtype": "float16",
        "threads": None,
        "model": "mlp",
        "model_description": "MLP",
        "sparsity": "2:4",
        "batch": 64,
        "dense_ms": 0.2,
        "converted_ms": 0.1,
        "speedup": 2.0,
        "forced_semi_structured_speedup": 1.5,
        "layers_converted": 2,
        "layers_total": 3,
    }
    data = {
        "date": "now",
        "repeats": 15,
        "machine": {"cpu": "x", "cpu_count": 16, "torch": "2.x", "gpu": "NVIDIA H200", "git_commit": "abc"},
        "results": [row],
    }
    text = results_markdown(data, "python -m benchmarks.inference --device cuda")
    assert text.startswith("## Sparse inference latency on NVIDIA H200")
    assert "2:4 on NVIDIA H200, mlp, batch 64: semi-structured kernels 1.50x" in text
    path = tmp_path / "RESULTS.md"
    path.write_text(f"{markers('inference')[0]}\nCPU rows\n{markers('inference')[1]}\n")
    write_results_section(path, text, "inference-cuda")
    written = path.read_text()
    assert "CPU rows" in written and all(m in written for m in markers("inference-cuda"))


def test_every_cuda_only_test_carries_the_cuda_marker() -> None:
    """`pytest -m cuda` (the suite's part c) selects a test only if it is marked: a test that skips
    without CUDA but lacks the marker would never run anywhere."""
    unmarked = []
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            decorators = [ast.unparse(d) for d in node.decorator_list]
            needs_cuda = any("skipif" in d and "cuda.is_available()" in d and "not " in d for d in decorators)
            if needs_cuda and "pytest.mark.cuda" not in decorators:
                unmarked.append(f"{path.relative_to(REPO)}::{node.name}")
    assert not unmarked, unmarked
