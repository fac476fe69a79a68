"""The translation benchmark runs end to end on its smoke tier and its rows render in RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.make_results import translation_section

REPO = Path(__file__).resolve().parents[2]
FIELDS = {
    "tier",
    "model",
    "method",
    "sparsity",
    "seed",
    "epochs",
    "test_bleu",
    "test_chrf",
    "valid_bleu",
    "final_sparsity",
    "train_seconds",
    "device",
    "commit",
}


@pytest.mark.slow  # a task benchmark's smoke: minutes of CPU; `make test-slow` runs it
def test_translation_smoke_rows(tmp_path: Path) -> None:
    out = tmp_path / "translation.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.translation", "--smoke", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["method"] for r in rows} == {"dense", "cgap"}
    for row in rows:
        assert set(row) >= FIELDS
        assert row["tier"] == "smoke"
        assert 0.0 <= row["test_bleu"] <= 100.0
    cgap = next(r for r in rows if r["method"] == "cgap")
    assert abs(cgap["final_sparsity"] - 0.8) < 1e-3
    # smoke rows never reach RESULTS.md; the same rows relabelled as a tier do
    assert "No runs recorded yet" in translation_section(rows)
    table = translation_section([{**r, "tier": "quick"} for r in rows])
    assert "| cgap |" in table and "| dense |" in table and "benchmarks.translation --tier quick" in table
