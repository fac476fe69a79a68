"""The report figures drawn from typed records and timeline segments."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from growprune.records import EpochRecord, MaskEvent, StepRecord
from growprune.report.figures import plot_curves, plot_schedule
from growprune.report.timeline import phase_segments
from tests.report.test_timeline import cgap_records, pgap_records


def check_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_pgap_figures_show_every_partition(tmp_path: Path) -> None:
    records = pgap_records()
    segments = phase_segments(records, parallel=True)
    events = [r for r in records if isinstance(r, MaskEvent)]
    steps = [r for r in records if isinstance(r, StepRecord)]
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    check_png(plot_schedule(tmp_path / "schedule.png", segments, events, partitions=2, title="P-GaP"))
    check_png(plot_curves(tmp_path / "curves.png", steps, epochs, events, segments, title="P-GaP"))
    # partitions unknown (no start record): the one-row chart, not a crash
    check_png(plot_schedule(tmp_path / "unknown.png", segments, events))


def test_cgap_schedule_of_an_unfinished_run(tmp_path: Path) -> None:
    records = cgap_records()[:7]
    segments = phase_segments(records)
    events = [r for r in records if isinstance(r, MaskEvent)]
    path = plot_schedule(
        tmp_path / "schedule.png", segments, events, partitions=3, stopped_at=35, planned_end=80
    )
    check_png(path)
