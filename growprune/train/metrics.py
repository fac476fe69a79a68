"""Run metrics: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard.

JSONL because a run killed mid-write loses at most its last line, and any tool reads it. Each
line is one typed record of :mod:`growprune.records` (``start``, ``step``, ``epoch``,
``event``, ``merge``, ``final``) written with ``record_to_json``; read them back with
:func:`growprune.records.read_records`, the one reader.
"""

from __future__ import annotations

import json
from pathlib import Path

from growprune.files import atomic_write_text
from growprune.records import METRICS_FILE, Record, as_int, record_to_json


class MetricsLogger:
    def __init__(
        self, run_dir: Path, tensorboard: bool, resume_step: int | None = None, epoch_open: bool = False
    ) -> None:
        self.path = run_dir / METRICS_FILE
        if resume_step is not None:
            self._truncate_after(resume_step, epoch_open)
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

    def _truncate_after(self, step: int, epoch_open: bool = False) -> None:
        """Drop records written after the checkpoint we resume from, so nothing is counted twice.

        ``epoch_open``: the checkpoint was taken before the end of the epoch at ``step``, so an
        epoch record at ``step`` came after it (the resumed run writes it again).
        Kept lines are copied as written, not re-encoded through the typed records, so a kind or
        field this version does not know survives a resume; unreadable lines (a killed run's
        half-written last one) are dropped. Records without a step (the start record) are kept.
        """
        kept = []
        text = self.path.read_text(encoding="utf-8", errors="replace") if self.path.exists() else ""
        for line in text.splitlines():
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (
                isinstance(data, dict)
                and data.get("type") != "final"
                and (as_int(data.get("step")) or 0) <= step
                and not (epoch_open and data.get("type") == "epoch" and as_int(data.get("step")) == step)
            ):
                kept.append(line + "\n")
        # atomically: a full disk here must not leave the run without its records
        atomic_write_text(self.path, "".join(kept))

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
