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
    write_results_section(md, results_markdown(data, "python -m benchmarks.inference --quick"))
    write_results_section(md, results_markdown(data, "python -m benchmarks.inference --quick"))
    text = md.read_text()
    assert "keep me" in text and text.count(MARK_START) == 1 and text.count(MARK_END) == 1
    assert "| cpu (float32) | 1 | mlp | 0.9 | 1 |" in text


def test_module_command_quick(tmp_path: Path) -> None:
    """``python -m benchmarks.inference``: a quick run to a JSON file, its section redone from the
    file, and a redo with nowhere to write refused as a usage error."""
    from benchmarks.inference import main

    out = tmp_path / "r.json"
    args = ["--quick", "--threads", "1", "--repeats", "1", "--sparsity", "2:4", "--batch", "2"]
    assert main([*args, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["command"].startswith("python -m benchmarks.inference --quick --threads 1")
    assert len(data["results"]) == 2
    md = tmp_path / "RESULTS.md"
    assert main(["--from-json", str(out), "--results-md", str(md)]) == 0
    assert "| cpu (float32) | 1 | mlp | 2:4 | 2 |" in md.read_text()
    with pytest.raises(SystemExit) as exit_:
        main(["--quick", "--from-json", str(out)])  # --quick writes only where told
    assert exit_.value.code == 2
