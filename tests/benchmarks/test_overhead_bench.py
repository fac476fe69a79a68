"""The overhead benchmark runs end to end on tiny models and writes the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmarks.helpers import run_benchmark


def test_overhead_smoke(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    result = run_benchmark("overhead", "--smoke", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    for model in ("mlp", "resnet20"):
        ratios = data[model]
        assert ratios["plain"] == 1.0
        assert {"dense", "cgap", "rigl", "torch.ao"} <= set(ratios)
        assert all(r > 0 for r in ratios.values())
    assert data["transition_seconds_25M"] > 0 and data["rigl_update_seconds_25M"] > 0
    assert data["machine"]["cpu_count"] >= 1 and data["commit"]
    assert "x plain" in result.stdout


def test_make_results_keeps_other_sections(tmp_path: Path) -> None:
    """The generator rewrites only its marked sections; the inference section survives."""
    from benchmarks import make_results

    rows = [
        {
            "tier": "quick",
            "model": "small_cnn",
            "method": m,
            "sparsity": s,
            "distribution": d,
            "seed": 0,
            "epochs": 6,
            "top1": acc,
            "final_sparsity": s,
            "train_seconds": 1.0,
            "device": "cpu",
            "commit": "abc",
            "machine": {"cpu_count": 2, "torch": "x"},
        }
        for m, s, d, acc in [
            ("dense", 0.0, "dense", 0.9),
            ("cgap", 0.8, "uniform", 0.899),
            ("rigl", 0.8, "uniform", 0.88),
            ("rigl-torch", 0.8, "uniform", 0.87),
        ]
    ]
    quality = tmp_path / "quality.jsonl"
    quality.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = tmp_path / "RESULTS.md"
    md.write_text(
        "# Benchmark results\n\n<!-- growprune:inference:start -->\nINFERENCE\n"
        "<!-- growprune:inference:end -->\n\nHand-written notes.\n"
    )
    args = ["--quality", str(quality), "--overhead", str(tmp_path / "none.json"), "--out", str(md)]
    make_results.main(args)
    make_results.main(args)  # idempotent: sections replaced, not duplicated
    text = md.read_text()
    assert "INFERENCE" in text and "Hand-written notes." in text
    assert text.count("<!-- growprune:quality:start -->") == 1
    assert "| C-GaP | 89.90 | - |" in text  # 90% not run: shown as missing, not dropped
    assert "cgap 90% uniform (0/1 seeds)" in text
    assert "within 0.3 points of dense or better: **met**" in text
    assert "Our RigL at least as accurate as rigl-torch at 80%: **met** (88.00 vs 87.00)" in text
    assert (tmp_path / "results" / "quality_quick.png").exists()
