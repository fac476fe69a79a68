"""The inference benchmark's quick mode runs end to end (no timing assertions: shared machines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.inference import (
    MARK_END,
    MARK_START,
    results_markdown,
    run_benchmark,
    write_results_section,
)


def test_quick_benchmark_and_results_section(tmp_path: Path) -> None:
    data = run_benchmark(
        quick=True, threads=[1], repeats=1, batches=(1, 4), sparsities=("0.9",), log=lambda _: None
    )
    assert {r["model"] for r in data["results"]} == {"mlp", "transformer"}
    row = data["results"][0]
    assert {"dense_ms", "converted_ms", "speedup", "layers_converted", "report", "threads"} <= set(row)
    assert row["max_relative_error"] < 1e-3
    assert data["machine"]["cpu_count"] and data["machine"]["torch"]
    json.dumps(data)
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\n## Other section\n\nkeep me\n")
    write_results_section(md, results_markdown(data, "growprune bench-infer --quick"))
    write_results_section(md, results_markdown(data, "growprune bench-infer --quick"))
    text = md.read_text()
    assert "keep me" in text and text.count(MARK_START) == 1 and text.count(MARK_END) == 1
    assert "| cpu (float32) | 1 | mlp | 0.9 | 1 |" in text


def test_cli_bench_infer_quick(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from growprune.cli import main

    out = tmp_path / "r.json"
    args = ["bench-infer", "--quick", "--threads", "1", "--repeats", "1", "--sparsity", "2:4", "--batch", "2"]
    assert main([*args, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["command"].startswith("growprune bench-infer --quick --threads 1")
    assert len(data["results"]) == 2 and "2:4" in capsys.readouterr().out
    md = tmp_path / "RESULTS.md"
    assert main(["bench-infer", "--from-json", str(out), "--results-md", str(md)]) == 0
    assert "| cpu (float32) | 1 | mlp | 2:4 | 2 |" in md.read_text()
    assert main(["bench-infer", "--from-json", str(out)]) == 2  # nowhere to write: a one-line usage error
