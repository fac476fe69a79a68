"""The run report back end, on synthetic run directories written as the training engine writes them.

The metric lines are built from the record dataclasses and written with ``record_to_json``, so
these tests and the engine share one format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import yaml

from growprune.records import (
    EpochRecord,
    FinalRecord,
    MaskEvent,
    MergeRecord,
    Phase,
    Record,
    StartRecord,
    StepRecord,
    record_to_json,
)
from growprune.report.run import ReportError, load_run, planned_end, write_report
from growprune.report.timeline import phase_segments

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS_PER_EPOCH = 50
PhaseAt = Callable[[int], Phase]


def cgap_phase(step: int, partitions: int, per_phase: int, rounds: int) -> Phase:
    """The phase C-GaP's describe_phase gives at `step`."""
    index = step // per_phase
    if index < partitions * rounds:
        return Phase(
            "gap",
            step,
            round=index // partitions + 1,
            rounds=rounds,
            dense_partition=index % partitions + 1,
            partitions=partitions,
        )
    return Phase("finetune", step)


def plain_phase(step: int) -> Phase:
    return Phase("dense", step)


def layers(count: int, sparsity: float) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        numel = 288 * (i + 1)
        zeros = round(numel * sparsity * (0.9 + 0.2 * (i % 2)))
        out.append(
            {
                "name": f"features.{i}.conv.weight",
                "shape": [32 * (i + 1), 1, 3, 3],
                "numel": numel,
                "zeros": zeros,
                "sparsity": zeros / numel,
            }
        )
    return out


def metric_records(
    total: int, phase: PhaseAt, events: dict[int, str], sparsity: Callable[[int], float]
) -> list[Record]:
    """Step records every 10 steps, epoch records every STEPS_PER_EPOCH, events where asked.

    `phase(step)` gives the phase and `sparsity(step)` the overall sparsity at a step.
    """
    records: list[Record] = []
    for step in range(0, total + 1, 10):
        if step in events:
            records.append(MaskEvent(step, events[step], phase(step), sparsity(step)))
        if step == 0:
            continue
        records.append(
            StepRecord(
                step=step,
                epoch=step / STEPS_PER_EPOCH,
                loss=2.0 * math.exp(-step / 300) + 0.1 * (step % 30) / 30,
                lr=0.05,
                phase=phase(step),
                time=step * 0.1,
            )
        )
        if step % STEPS_PER_EPOCH == 0:
            epoch = step // STEPS_PER_EPOCH
            records.append(
                EpochRecord(
                    epoch=epoch,
                    step=step,
                    train_loss=1.0 / epoch,
                    train_acc=0.6 + 0.3 * (1 - 1 / epoch),
                    scores={
                        "test_loss": 1.1 / epoch,
                        "test_acc": 0.55 + 0.3 * (1 - 1 / epoch) - (0.01 if epoch == 20 else 0),
                    },
                    sparsity=sparsity(step),
                    layer_sparsity={},
                    lr=0.05,
                    phase=phase(step),
                    time=step * 0.1,
                )
            )
    return records


def final_record(step: int, accuracy: float, sparsity: float, total: int, kept: int, seconds: float, rows):
    return FinalRecord(
        step=step,
        scores={"test_acc": accuracy, "test_loss": 0.31},
        score_name="test_acc",
        sparsity=sparsity,
        params_total=total,
        params_kept=kept,
        train_seconds=seconds,
        layers=rows,
    )


def write_run(
    run_dir: Path, recipe: dict[str, Any] | None, records: Sequence[Record], tail: str = ""
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    if recipe is not None:
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    text = "".join(json.dumps(record_to_json(r)) + "\n" for r in records)
    (run_dir / "metrics.jsonl").write_text(text + tail)
    return run_dir


def cgap_start(partitions: int = 4, total_steps: int = 1000) -> StartRecord:
    return StartRecord(
        method="cgap",
        title="C-GaP",
        steps_per_epoch=STEPS_PER_EPOCH,
        total_steps=total_steps,
        process_steps=total_steps,
        partitions=[[f"features.{k}.conv.weight"] for k in range(partitions)],
    )


CGAP_RECIPE = {
    "method": {
        "name": "cgap",
        "sparsity": 0.8,
        "partitions": 4,
        "epochs_per_phase": 2,
        "rounds": 2,
        "finetune_epochs": 4,
    },
    "model": {"name": "small_cnn"},
    "data": {"name": "fashion_mnist"},
    "training": {"epochs": 20},
}


def cgap_run(tmp_path: Path, finished: bool = True, tail: str = "", layer_count: int = 6) -> Path:
    def phase(step: int) -> Phase:
        return cgap_phase(step, 4, 100, 2)

    events = {0: "init", **{step: "prune-grow" for step in range(100, 800, 100)}, 800: "final-prune"}
    records: list[Record] = [cgap_start()]
    records += metric_records(
        1000 if finished else 430, phase, events, lambda step: 0.6 if step < 800 else 0.8
    )
    if finished:
        records.append(final_record(1000, 0.889, 0.8, 100000, 21000, 512.3, layers(layer_count, 0.8)))
    return write_run(tmp_path / "cgap", CGAP_RECIPE, records, tail)


def check_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def check_links(report: Path) -> list[str]:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert links
    for link in links:
        assert not Path(link).is_absolute()
        check_png(report.parent / link)
    return links


def test_finished_cgap_run(tmp_path: Path) -> None:
    run_dir = cgap_run(tmp_path, layer_count=60)
    report = write_report(run_dir)
    assert report == run_dir / "report" / "report.md"
    for name in ("curves.png", "schedule.png", "layers.png"):
        check_png(run_dir / "report" / name)
    assert sorted(check_links(report)) == ["curves.png", "layers.png", "schedule.png"]
    text = report.read_text()
    assert text.startswith("# C-GaP: small_cnn on fashion_mnist")
    assert "88.90 %" in text  # final test accuracy
    assert "| best test accuracy (final masks) | 83.42 % (epoch 19) |" in text
    assert "80.00 %" in text  # final sparsity
    assert "21,000 / 100,000" in text
    assert "8 min 32 s" in text
    assert "9 (init: 1, prune-grow: 7, final-prune: 1)" in text
    assert "features.59.conv.weight" in text
    assert "Unfinished" not in text


def test_report_reads_phases_from_typed_records(tmp_path: Path) -> None:
    """The schedule comes from the records' Phase objects, partitions from the start record."""
    run = load_run(cgap_run(tmp_path))
    assert run.start is not None and run.start.num_partitions == 4
    segments = phase_segments(run.phased, run.last_step)
    assert [s.partition for s in segments] == [1, 2, 3, 4, 1, 2, 3, 4, None]
    assert segments[-1].name == "finetune" and segments[-1].end == 1000
    text = write_report(run.run_dir).read_text()
    assert "| planned length | 1,000 steps (20 epochs) |" in text
    assert "| partitions | 4 (one after another) |" in text


def test_dense_run_without_partitions(tmp_path: Path) -> None:
    start = StartRecord("dense", "dense", STEPS_PER_EPOCH, 500, 500)
    records = [start, *metric_records(500, plain_phase, {}, lambda step: 0.0)]
    records.append(final_record(500, 0.91, 0.0, 5000, 5000, 42.0, layers(3, 0.0)))
    recipe = {"method": {"name": "dense"}, "model": {"name": "mlp"}, "data": {"name": "synthetic"}}
    report = write_report(write_run(tmp_path / "dense", recipe, records))
    check_links(report)
    text = report.read_text()
    assert text.startswith("# dense: mlp on synthetic")
    assert "91.00 %" in text and "42 s" in text and "| mask-change events | 0 |" in text
    assert "| best test accuracy (any epoch; masks never final) | 82.00 % (epoch 10) |" in text
    assert "| partitions |" not in text


def test_run_killed_mid_write(tmp_path: Path) -> None:
    """A half-written last line is skipped and reported; the rest of the run is reported."""
    run_dir = cgap_run(tmp_path, finished=False, tail='{"type": "step", "step": 44')
    report = write_report(run_dir)
    links = check_links(report)
    assert "layers.png" not in links
    text = report.read_text()
    assert "Unfinished run" in text and "step 430 (epoch 8.60) of 1,000 planned (43%)" in text
    assert "| best test accuracy (any epoch; masks never final) | 81.25 % (epoch 8) |" in text
    assert "| final sparsity (last logged, unfinished) | 60.00 % |" in text
    last_line = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert f"Skipped 1 unreadable line(s) of metrics.jsonl: {last_line}." in text
    assert "No per-layer sparsity yet" in text


def test_planned_length_comes_from_the_start_record(tmp_path: Path) -> None:
    run = load_run(cgap_run(tmp_path, finished=False))
    assert planned_end(run) == pytest.approx(1000)
    del run.recipe["training"], run.recipe["method"]  # the recipe is not consulted for the length
    assert planned_end(run) == pytest.approx(1000)
    assert planned_end(load_run(cgap_run(tmp_path / "done"))) is None  # finished: nothing left


def test_run_without_start_record(tmp_path: Path) -> None:
    """A run written by an older version: length and partitions unknown, not recomputed."""
    records = metric_records(430, lambda step: cgap_phase(step, 4, 100, 2), {0: "init"}, lambda step: 0.6)
    run_dir = write_run(tmp_path / "old", CGAP_RECIPE, records)
    run = load_run(run_dir)
    assert run.start is None and planned_end(run) is None
    text = write_report(run_dir).read_text()
    assert text.startswith("# C-GaP: small_cnn on fashion_mnist")  # the registered method's title
    assert "| planned length | unknown |" in text and "| partitions | unknown |" in text
    assert "No start record" in text
    assert "step 430 (epoch 8.60)." in text  # no "of N planned"


def test_unfinished_run_uses_sparsity_json(tmp_path: Path) -> None:
    run_dir = cgap_run(tmp_path, finished=False)
    (run_dir / "sparsity.json").write_text(json.dumps({"layers": layers(4, 0.5), "overall": 0.5}))
    report = write_report(run_dir)
    assert "layers.png" in check_links(report)
    assert "From the sparsity.json" in report.read_text()


def test_minimal_run_without_recipe(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "bare", None, [StepRecord(5, 0.1, 1.0, None, None, None)])
    report = write_report(run_dir)
    check_links(report)
    text = report.read_text()
    assert "unknown method" in text and "recipe.yaml` not found" in text


def test_empty_metrics_is_a_clear_error(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "empty", CGAP_RECIPE, [])
    with pytest.raises(ReportError, match="metrics.jsonl holds no metric records"):
        write_report(run_dir)


def test_missing_metrics_and_directory(tmp_path: Path) -> None:
    (tmp_path / "nometrics").mkdir()
    with pytest.raises(ReportError, match="metrics.jsonl"):
        write_report(tmp_path / "nometrics")
    with pytest.raises(ReportError, match="run directory not found"):
        write_report(tmp_path / "absent")


def test_pgap_merges_are_reported(tmp_path: Path) -> None:
    """Merge records (bytes exchanged, waiting time) of a P-GaP run appear in report.md."""
    records: list[Record] = [
        EpochRecord(
            1, 10, 1.0, 0.5, {"test_loss": 1.0, "test_acc": 0.5}, 0.8, {}, None, Phase("finetune", 10), 1.0
        ),
        MergeRecord(round=1, step=10, bytes_exchanged=123456, wait_seconds=0.25, merge_seconds=0.01),
    ]
    text = write_report(write_run(tmp_path / "pgap", None, records)).read_text()
    assert "P-GaP merges" in text and "123,456" in text and "250.0 ms" in text


def test_third_party_method_is_titled_by_its_registration(tmp_path: Path) -> None:
    """A method registered outside growprune gets its own title in the heading."""
    import growprune
    from growprune.methods import METHODS, Sparsifier

    class MyMethod(Sparsifier):
        method = "mymethod"
        title = "My Method"

        def describe_phase(self, step: int) -> Phase:
            return Phase("sparse", step)

    growprune.register_method(MyMethod)
    try:
        recipe = {"method": {"name": "mymethod"}, "model": {"name": "mlp"}, "data": {"name": "synthetic"}}
        start = StartRecord("mymethod", MyMethod.title, STEPS_PER_EPOCH, 100, 100)
        records = [start, *metric_records(100, lambda step: Phase("sparse", step), {}, lambda step: 0.5)]
        text = write_report(write_run(tmp_path / "mine", recipe, records)).read_text()
        assert text.startswith("# My Method: mlp on synthetic")
        assert '- `name`: `"mymethod"`' in text  # the recipe's method settings are still listed
        # without a start record (an older writer) the title is looked up in the registry
        text = write_report(write_run(tmp_path / "old", recipe, records[1:])).read_text()
        assert text.startswith("# My Method: mlp on synthetic")
    finally:
        METHODS.pop("mymethod", None)
    text = write_report(tmp_path / "old").read_text()  # no longer registered: the raw name
    assert text.startswith("# mymethod: mlp on synthetic")


@pytest.mark.parametrize(
    ("fields", "row"),
    [
        (
            {"device": "cpu", "cpu_kernels": "AVX512", "threads": 2, "torch_version": "2.13.0+cpu"},
            "| computed on | cpu, AVX512 kernels, 2 threads, torch 2.13.0+cpu |",
        ),
        (
            {"device": "cpu", "cpu_kernels": "DEFAULT", "threads": 1},
            "| computed on | cpu, DEFAULT kernels, 1 thread |",
        ),
        ({"device": "cuda:0", "torch_version": "2.14.1"}, "| computed on | cuda:0, torch 2.14.1 |"),
        ({}, None),  # an older run did not record it: no row rather than a guess
    ],
)
def test_report_names_the_kernels_a_run_was_computed_with(
    tmp_path: Path, fields: dict[str, Any], row: str | None
) -> None:
    """The same recipe and seed give other numbers on AVX-512, AVX2 and unvectorized kernels."""
    start = StartRecord("dense", "dense", STEPS_PER_EPOCH, 500, 500, **fields)
    assert StartRecord.from_dict(record_to_json(start)) == start
    records = [start, *metric_records(500, plain_phase, {}, lambda step: 0.0)]
    records.append(final_record(500, 0.91, 0.0, 5000, 5000, 42.0, layers(3, 0.0)))
    recipe = {"method": {"name": "dense"}, "model": {"name": "mlp"}, "data": {"name": "synthetic"}}
    text = write_report(write_run(tmp_path / "run", recipe, records)).read_text()
    if row is None:
        assert "computed on" not in text
    else:
        assert row in text


@pytest.mark.parametrize(
    ("memory", "row"),
    [
        (
            {"peak_rss_mib": 812.4, "peak_rss_above_start_mib": 301.2},
            "| peak memory | 812 MiB process RSS (301 MiB above the start of training); masked storage |",
        ),
        (
            {"peak_rss_mib": 2048.0, "peak_rss_above_start_mib": 10.0, "peak_cuda_mib": 1536.0},
            "| peak memory | 1,536 MiB CUDA allocated; 2,048 MiB process RSS "
            "(10 MiB above the start of training); compact storage |",
        ),
        ({}, None),
    ],
)
def test_report_states_peak_memory(tmp_path: Path, memory: dict[str, float], row: str | None) -> None:
    """The run's peak memory and the storage it trained in (method.storage, masked by default)."""
    start = StartRecord("dense", "dense", STEPS_PER_EPOCH, 500, 500)
    final = final_record(500, 0.91, 0.0, 5000, 5000, 42.0, layers(3, 0.0))
    for key, value in memory.items():
        setattr(final, key, value)
    assert FinalRecord.from_dict(record_to_json(final)) == final
    records = [start, *metric_records(500, plain_phase, {}, lambda step: 0.0), final]
    method = {"name": "dense", **({"storage": "compact"} if "peak_cuda_mib" in memory else {})}
    recipe = {"method": method, "model": {"name": "mlp"}, "data": {"name": "synthetic"}}
    text = write_report(write_run(tmp_path / "run", recipe, records)).read_text()
    if row is None:
        assert "peak memory" not in text
    else:
        assert row in text
