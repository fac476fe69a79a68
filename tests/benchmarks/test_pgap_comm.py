"""The P-GaP communication benchmark runs end to end (tiny synthetic version)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.benchmarks.helpers import run_benchmark


@pytest.mark.slow  # 20 s of torchrun; `make test-slow` runs it
def test_pgap_comm_smoke() -> None:
    result = run_benchmark("pgap_comm", "--smoke", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written = Path(re.search(r"written to (\S+)", result.stdout).group(1))
    data = json.loads(written.read_text())
    assert data["gap_steps"] == 4
    assert 0 < data["bytes_ratio_pgap_to_ddp"] < 1  # merges exchange far less than per-step all-reduce
    assert data["pgap_wall_seconds"] > 0 and data["cgap_wall_seconds"] > 0
