"""The translation report section reads epochs whose phase is a records.Phase."""

from __future__ import annotations

from pathlib import Path

from growprune.records import EpochRecord
from growprune.tasks.translation.report import translation_lines


def test_epoch_table_shows_the_phase(tmp_path: Path) -> None:
    phase = {"name": "gap", "step": 4, "round": 1, "rounds": 2, "dense_partition": 1, "partitions": 2}
    epochs = [
        EpochRecord.from_dict({"epoch": 1.0, "step": 4, "phase": phase, "valid_bleu": 3.5, "valid_loss": 4.0})
    ]
    assert epochs[0].phase is not None and not isinstance(epochs[0].phase, str)
    lines = translation_lines(tmp_path, epochs, None)
    assert "| 1.00 | round 1/2, partition 1/2 dense | 4.00 | 3.50 | n/a |" in lines
