"""The C-GaP trace runs on the smoke tier and records every mask change with its accuracy."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.gap_trace import main, summarize


def test_gap_trace_smoke(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    assert main(["--smoke", "--out", str(out), "--epochs", "2"]) == 0
    record = json.loads(out.read_text())
    (run,) = record["runs"]
    events = [e["event"] for e in run["events"]]
    # 4 partitions x 2 rounds: 7 prune-and-grow changes, then the final prune
    assert events == ["prune-grow"] * 7 + ["final-prune"]
    assert all(0.0 <= e["acc_before"] <= 1.0 and 0.0 <= e["acc_after"] <= 1.0 for e in run["events"])
    assert run["events"][-1]["acc_recovered"] == run["top1"]
    # partition 1 starts dense (no mask before it to compare with); every later pruned partition
    # was grown from a sparse mask, so its churn is known
    assert run["events"][0]["churn"] is None
    assert all(e["churn"] is not None and 0.0 <= e["churn"] <= 1.0 for e in run["events"][1:])
    assert record["commit"] and run["summary"]["mean_drop"] is not None
    assert record["command"] == f"python -m benchmarks.gap_trace --smoke --out {out} --epochs 2"


def test_summarize_means() -> None:
    events = [
        {"event": "prune-grow", "acc_before": 0.8, "acc_after": 0.5, "acc_recovered": 0.85, "churn": 0.2},
        {"event": "final-prune", "acc_before": 0.85, "acc_after": 0.75, "acc_recovered": 0.9, "churn": 0.4},
    ]
    s = summarize(events)
    assert abs(s["mean_drop"] - 0.2) < 1e-9
    assert abs(s["mean_recovered_minus_before"] - 0.05) < 1e-9
    assert abs(s["mean_churn"] - 0.3) < 1e-9 and abs(s["final_prune_drop"] - 0.1) < 1e-9
