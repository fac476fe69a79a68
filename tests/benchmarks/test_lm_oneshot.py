"""The lm benchmark's one-shot rows: SparseGPT and Wanda by llm-compressor on the dense run.

They need llm-compressor's environment (``make bench-llm``: ``.venv-bench-llm``; its pinned
transformers differs from the suite's). Without it the test skips, except under
``GROWPRUNE_REQUIRE_LLMCOMPRESSOR=1``: ``make test-bench-llm`` (which CI runs) sets it, so there a
missing or broken environment fails rather than skips. It is behind the slow marker (a minute), so
``make test`` leaves it to that step.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.lm import PRUNER_PYTHON

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("GROWPRUNE_REQUIRE_LLMCOMPRESSOR") == "1"


@pytest.mark.slow  # a minute; make test-bench-llm (CI) runs it with -m slow
@pytest.mark.skipif(
    not PRUNER_PYTHON.is_file() and not REQUIRED,
    reason=f"{PRUNER_PYTHON} is missing: `make bench-llm` builds llm-compressor's environment",
)
def test_sparsegpt_and_wanda_prune_the_dense_run(tmp_path: Path) -> None:
    """The smoke tier with the one-shot rows at 80% and 2:4: each row prunes exactly the layers the
    growprune methods prune, to the target (2:4: every group of four inputs keeps at most two), and
    is scored by the lm task's evaluation; the dense model scores the same in both environments
    (the benchmark refuses the row otherwise)."""
    out = tmp_path / "rows.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.lm",
        "--smoke",
        "--sparsities",
        "0.8",
        "2:4",
        "--models-dir",
        str(tmp_path / "models"),
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    found = {(r["method"], r.get("pattern") or r["sparsity"]) for r in rows}
    expected = {(m, t) for m in ("sparsegpt", "wanda", "cgap") for t in (0.8, "2:4")} | {("dense", 0.0)}
    assert found == expected
    dense = next(r for r in rows if r["method"] == "dense")
    for row in rows:
        if row["method"] not in ("sparsegpt", "wanda"):
            continue
        config = row["method_config"]
        assert config["tool"] == "llmcompressor" and config["pruned_layers"] == 14  # 2 layers x 7
        # all the smoke tier's training blocks (4 batches of 32): fewer than the 512 it asks for
        assert config["calibration_blocks"] == 128 and row["dense_test_ppl"] == dense["test_ppl"]
        assert abs(row["final_sparsity"] - row["sparsity"]) < 0.01, row
        assert math.isfinite(row["test_ppl"]) and row["test_ppl"] > 1.0
        assert row["test_ppl"] != dense["test_ppl"]  # the pruning changed the model
    assert list((tmp_path / "models").glob("smoke-dense-seed0-*.pt"))
