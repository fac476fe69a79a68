"""The phase timeline from typed records: C-GaP partitions in turn, P-GaP partitions in parallel."""

from __future__ import annotations

from growprune.records import EpochRecord, MaskEvent, Phase, StepRecord
from growprune.report.timeline import Segment, best_epoch, phase_names, phase_segments, rounds


def gap(step: int, round_: int, rounds_: int, dense: int, partitions: int) -> Phase:
    return Phase("gap", step, round=round_, rounds=rounds_, dense_partition=dense, partitions=partitions)


def epoch(step: int, phase: Phase, accuracy: float) -> EpochRecord:
    return EpochRecord(step / 10, step, 1.0, 0.5, {"test_acc": accuracy}, 0.8, {}, 0.1, phase, None)


def cgap_records() -> list[StepRecord | EpochRecord | MaskEvent]:
    """C-GaP, K=3, 2 rounds of 10 steps per partition, then fine-tune to step 80, as the engine logs."""
    records: list[StepRecord | EpochRecord | MaskEvent] = []
    for index in range(6):
        step = 10 * index
        phase = gap(step, index // 3 + 1, 2, index % 3 + 1, 3)
        records.append(MaskEvent(step, "init" if step == 0 else "prune-grow", phase, 0.6))
        records.append(StepRecord(step + 5, (step + 5) / 10, 1.0, 0.1, phase, None))
    records.append(MaskEvent(60, "final-prune", Phase("finetune", 60), 0.8))
    records += [StepRecord(step, step / 10, 1.0, 0.1, Phase("finetune", step), None) for step in (65, 75)]
    records.append(StepRecord(80, 8.0, 1.0, 0.1, Phase("done", 80), None))
    return records


def test_cgap_segments_follow_partitions_and_rounds() -> None:
    segments = phase_segments(cgap_records())
    assert [s.partition for s in segments] == [1, 2, 3, 1, 2, 3, None]
    assert [s.round for s in segments] == [1, 1, 1, 2, 2, 2, None]
    assert [(s.start, s.end) for s in segments[:6]] == [(10.0 * i, 10.0 * (i + 1)) for i in range(6)]
    # the fine-tune runs to the last record; "done", logged at that very step, takes no room
    assert segments[6] == Segment(60, 80, "finetune")
    assert segments[6].label == "fine-tune" and segments[0].label == "partition 1 dense"
    assert not any(s.all_partitions for s in segments)
    assert rounds(segments) == [(1, 0.0), (2, 30.0)]
    assert phase_names(segments) == ["finetune"]


def test_last_segment_runs_to_the_end_step() -> None:
    segments = phase_segments(cgap_records()[:4], end_step=20)
    assert [(s.start, s.end, s.partition) for s in segments] == [(0, 10, 1), (10, 20, 2)]


def pgap_records() -> list[StepRecord | EpochRecord | MaskEvent]:
    """Single-process P-GaP, K=2, 2 rounds of 8 steps: each worker's grow event at the round start."""
    records: list[StepRecord | EpochRecord | MaskEvent] = [MaskEvent(0, "init", gap(0, 1, 2, 1, 2), 0.8)]
    for round_ in (1, 2):
        step = 8 * (round_ - 1)
        if round_ > 1:
            records.append(MaskEvent(step, "merge-prune", gap(step, round_, 2, 2, 2), 0.8))
        records += [MaskEvent(step, f"grow-{k}", gap(step, round_, 2, k, 2), 0.3) for k in (1, 2)]
        records.append(StepRecord(step + 4, 1.0, 1.0, 0.1, gap(step + 4, round_, 2, 1, 2), None))
        records.append(epoch(step + 8, gap(step + 8, round_ + 1, 2, 2, 2), 0.4))
    records.append(MaskEvent(16, "merge-prune", Phase("finetune", 16), 0.8))
    records.append(epoch(24, Phase("finetune", 24), 0.7))
    return records


def test_pgap_segments_cover_all_partitions_per_round() -> None:
    segments = phase_segments(pgap_records(), parallel=True)
    assert [(s.start, s.end, s.round, s.all_partitions) for s in segments] == [
        (0, 8, 1, True),
        (8, 16, 2, True),
        (16, 24, None, False),
    ]
    assert all(s.partition is None for s in segments)
    assert segments[0].label == "all partitions dense (one per worker)" and segments[-1].name == "finetune"
    assert phase_names(segments) == ["finetune"]


def test_pgap_read_as_sequential_switches_with_each_worker() -> None:
    """Without `parallel` (no start record), the workers' interleaved records flip the partition."""
    segments = phase_segments(pgap_records())
    assert {s.partition for s in segments if s.name == "gap"} <= {1, 2}
    assert not any(s.all_partitions for s in segments)
    assert all(s.end > s.start for s in segments)


def test_records_without_phase_give_no_timeline() -> None:
    assert phase_segments([StepRecord(5, 0.5, 1.0, 0.1, None, None)]) == []


def test_best_epoch_prefers_final_masks() -> None:
    epochs = [
        epoch(10, gap(10, 1, 1, 1, 2), 0.95),  # a half-dense model: no result
        epoch(20, Phase("finetune", 20), 0.80),
        epoch(30, Phase("done", 30), 0.85),
        epoch(40, Phase("done", 40), 0.85),
    ]
    assert best_epoch(epochs) == (2, True)  # the first of equal bests at final masks
    assert best_epoch(epochs[:1]) == (0, False)
    assert best_epoch([]) is None
