"""The schedule as a timeline: contiguous phases over steps, from typed records.

Pure logic, no drawing: the figures shade these segments, and the run report names the best
epoch from them. Phases come from the records themselves (:class:`~growprune.records.Phase`,
as the sparsifier describes them), never from display text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from growprune.records import EpochRecord, MaskEvent, Phase, PhaseName, StepRecord

FINETUNE = PhaseName.FINETUNE
#: Phases after the schedule has ended: nothing happens there worth a colour.
UNSHADED = PhaseName.ENDED

#: Records that state a step and the phase in force there.
PhasedRecord = StepRecord | EpochRecord | MaskEvent


@dataclass(frozen=True)
class Segment:
    """Steps ``[start, end)`` spent in one phase: the unit both phase charts shade."""

    start: float
    end: float
    name: str
    partition: int | None = None
    round: int | None = None
    all_partitions: bool = False  # every partition dense at once, each on its own worker (P-GaP)

    @property
    def label(self) -> str:
        if self.all_partitions:
            return "all partitions dense (one per worker)"
        if self.partition is not None:
            return f"partition {self.partition} dense"
        return "fine-tune" if self.name == FINETUNE else self.name


_Key = tuple[str, int | None, int | None, bool]  # (phase name, dense partition, round, all partitions)


def _key(phase: Phase, parallel: bool) -> _Key:
    if parallel and phase.dense_partition is not None:
        return phase.name, None, phase.round, True
    return phase.name, phase.dense_partition, phase.round, False


def phase_segments(
    records: Iterable[PhasedRecord], end_step: float | None = None, *, parallel: bool = False
) -> list[Segment]:
    """Contiguous phases from every record that states one.

    With ``parallel`` (P-GaP, as the start record says) every partition is dense at once on its
    own worker, so a phase with a dense partition becomes one segment per round covering all of
    them, whichever worker a record came from.

    A phase is known only where something was logged, so a change is placed at the first record
    showing the new phase: exact at mask-change events (logged after the change, so their phase
    is the one that starts there), else to the logging interval. The first phase is assumed to
    run from step 0 and the last one to ``end_step`` (or the last record). Records at the same
    step keep their logged order, so a single-process P-GaP run's K workers, logged one after the
    other at the same step, leave no empty segments.
    """
    points = sorted(
        (
            (float(r.step), _key(r.phase, parallel))
            for r in records
            if r.phase is not None and math.isfinite(r.step)
        ),
        key=lambda point: point[0],
    )
    if not points:
        return []
    last = max(points[-1][0], end_step if end_step is not None else -math.inf)
    segments: list[Segment] = []
    start, current = min(0.0, points[0][0]), points[0][1]
    for step, key in points[1:]:
        if not _same_phase(key, current):
            segments.append(Segment(start, step, *current))
            start, current = step, key
        elif current[2] is None:
            current = key  # a record that names the round completes one that did not
    segments.append(Segment(start, last, *current))
    return [s for s in segments if s.end > s.start]


def _same_phase(a: _Key, b: _Key) -> bool:
    """Same name and partition; rounds only differ if both records state one."""
    return a[:2] == b[:2] and a[3] == b[3] and (a[2] is None or b[2] is None or a[2] == b[2])


def phase_names(segments: Sequence[Segment]) -> list[str]:
    """Names of the phases without a dense partition, in order of first appearance."""
    names: list[str] = []
    for segment in segments:
        if segment.partition is None and not segment.all_partitions and segment.name not in names:
            names.append(segment.name)
    return names


def rounds(segments: Sequence[Segment]) -> list[tuple[int, float]]:
    """(round, first step) of every GaP round the segments show, in order."""
    seen: dict[int, float] = {}
    for segment in segments:
        if segment.round is not None and segment.round not in seen:
            seen[segment.round] = segment.start
    return list(seen.items())


def best_epoch(epochs: Sequence[EpochRecord], score: str = "test_acc") -> tuple[int, bool] | None:
    """Index of the epoch record with the best ``score``, and whether its masks were final.

    Under GaP a partition is dense for most of training, and the accuracy of such a half-dense
    model is no result; so, like the engine's "best" checkpoint, only epochs logged in a
    final-mask phase (fine-tune, done) count when there are any. Runs without one (a dense
    baseline, a run stopped mid-schedule) fall back to every epoch and say so (False).
    """
    scored = [(i, e.scores.get(score)) for i, e in enumerate(epochs)]
    scored = [(i, a) for i, a in scored if a is not None and math.isfinite(a)]
    final = [(i, a) for i, a in scored if (p := epochs[i].phase) is not None and p.masks_final]
    pool = final or scored
    if not pool:
        return None
    index = max(pool, key=lambda item: (item[1], -item[0]))[0]  # first of equal bests
    return index, bool(final)
