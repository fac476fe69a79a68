"""The part-segmentation benchmark runs end to end on its smoke tier and its rows render in RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.make_results import partseg_section

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a task benchmark's smoke: minutes of CPU; `make test-slow` runs it
def test_partseg_smoke_rows(tmp_path: Path) -> None:
    out = tmp_path / "partseg.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GROWPRUNE_CACHE": str(tmp_path / "cache")}
    env["GROWPRUNE_SHAPENET_PART"] = ""  # the generated data, whatever the caller's environment says
    cmd = [sys.executable, "-m", "benchmarks.partseg", "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["method"] for r in rows] == ["dense", "cgap"]
    for row in rows:
        assert row["tier"] == "smoke" and row["generated"] is True
        assert 0.0 <= row["test_instance_miou"] <= 1.0 and 0.0 <= row["test_class_miou"] <= 1.0
    assert abs(rows[1]["final_sparsity"] - 0.8) < 1e-3
    assert "No runs recorded yet" in partseg_section(rows)
    table = partseg_section([{**r, "tier": "quick"} for r in rows])
    assert "| cgap |" in table and "| dense |" in table and "benchmarks.partseg --tier quick" in table
