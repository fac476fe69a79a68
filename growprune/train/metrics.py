"""Run metrics: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard.

JSONL because a run killed mid-write loses at most its last line, and any tool reads it. Each
record has a ``type``: ``step`` (loss, lr, phase every few steps), ``epoch`` (train/test
accuracy and loss, sparsity), ``event`` (mask changes), ``final`` (the finished run's summary).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from growprune.records import METRICS_FILE, Record, record_to_json


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Parsed records; a truncated last line (a killed run) is skipped."""
    path = run_dir / METRICS_FILE
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLogger:
    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None) -> None:
        self.path = run_dir / METRICS_FILE
        if resume_step is not None:
            self._truncate_after(resume_step)
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise RuntimeError(
                    "output.tensorboard is true but the tensorboard package is not installed; "
                    "pip install tensorboard, or set output.tensorboard=false"
                ) from err
            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        """Drop records written after the checkpoint we resume from, so nothing is counted twice."""
        kept = [
            r for r in read_metrics(self.path.parent) if r.get("type") != "final" and r.get("step", 0) <= step
        ]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def log(self, typed: Record) -> None:
        record = record_to_json(typed)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None and "step" in record:
            kind = record["type"]
            for key, value in record.items():
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and key not in ("step", "time")
                ):
                    self._tb.add_scalar(f"{kind}/{key}", value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
