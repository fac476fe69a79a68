"""The Lightning callback on an FSDP2-sharded model: ModelParallelStrategy, 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")

WORKER = Path(__file__).with_name("lightning_fsdp_worker.py")
REPO = WORKER.parents[2]


def test_model_parallel_strategy_trains_sharded_to_the_target(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(WORKER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    files = sorted(tmp_path.glob("result.*.json"))  # one per rank: they share one stdout
    results = [json.loads(path.read_text()) for path in files]
    assert sorted(r["rank"] for r in results) == [0, 1], done.stdout[-2000:]
    first, second = results
    assert first["sharded"] and second["sharded"], "the callback's sparsifier did not see DTensor parameters"
    assert first["overall"] == second["overall"] == pytest.approx(0.8, abs=0.01)
    assert first["layers"] == second["layers"] and first["masks"] == second["masks"]
