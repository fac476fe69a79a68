"""The run report back end, on synthetic run directories shaped like the training engine's."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import yaml

from growprune.train.plots import phase_segments
from growprune.train.run_report import load_run, planned_end, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS_PER_EPOCH = 50


def cgap_phase(step: int, partitions: int, per_phase: int, rounds: int) -> dict[str, Any]:
    """Phase fields as C-GaP's describe_phase would log them at `step`."""
    index = step // per_phase
    if index < partitions * rounds:
        dense = index % partitions + 1
        return {
            "phase": f"round {index // partitions + 1}/{rounds}, partition {dense}/{partitions} dense",
            "phase_name": "gap",
            "dense_partition": dense,
            "partitions": partitions,
        }
    return {"phase": "finetune", "phase_name": "finetune", "dense_partition": None, "partitions": None}


def plain_phase(step: int) -> dict[str, Any]:
    return {"phase": "dense", "phase_name": "dense", "dense_partition": None, "partitions": None}


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


def metric_records(total: int, phase, events: dict[int, str], sparsity) -> list[dict[str, Any]]:
    """Step records every 10 steps, epoch records every STEPS_PER_EPOCH, events where asked.

    `phase(step)` gives the phase fields and `sparsity(step)` the overall sparsity at a step.
    """
    records: list[dict[str, Any]] = []
    for step in range(0, total + 1, 10):
        if step in events:
            records.append(
                {
                    "type": "event",
                    "step": step,
                    "event": events[step],
                    "phase": phase(step)["phase"],
                    "sparsity": sparsity(step),
                }
            )
        if step == 0:
            continue
        records.append(
            {
                "type": "step",
                "step": step,
                "epoch": step / STEPS_PER_EPOCH,
                "loss": 2.0 * math.exp(-step / 300) + 0.1 * (step % 30) / 30,
                "lr": 0.05,
                "time": step * 0.1,
                **phase(step),
            }
        )
        if step % STEPS_PER_EPOCH == 0:
            epoch = step // STEPS_PER_EPOCH
            records.append(
                {
                    "type": "epoch",
                    "epoch": epoch,
                    "step": step,
                    "train_loss": 1.0 / epoch,
                    "train_acc": 0.6 + 0.3 * (1 - 1 / epoch),
                    "test_loss": 1.1 / epoch,
                    "test_acc": 0.55 + 0.3 * (1 - 1 / epoch) - (0.01 if epoch == 20 else 0),
                    "sparsity": sparsity(step),
                    "lr": 0.05,
                    "time": step * 0.1,
                    **phase(step),
                }
            )
    return records


def write_run(run_dir: Path, recipe: dict[str, Any], records: list[dict[str, Any]], tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    text = "".join(json.dumps(r) + "\n" for r in records)
    (run_dir / "metrics.jsonl").write_text(text + tail)
    return run_dir


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
    def phase(step: int) -> dict[str, Any]:
        return cgap_phase(step, 4, 100, 2)

    events = {0: "init", **{step: "prune-grow" for step in range(100, 800, 100)}, 800: "final-prune"}
    records = metric_records(
        1000 if finished else 430, phase, events, lambda step: 0.6 if step < 800 else 0.8
    )
    if finished:
        records.append(
            {
                "type": "final",
                "test_acc": 0.889,
                "test_loss": 0.31,
                "sparsity": 0.8,
                "params_total": 100000,
                "params_kept": 21000,
                "train_seconds": 512.3,
                "layers": layers(layer_count, 0.8),
            }
        )
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


def test_cgap_segments_follow_partitions_and_events(tmp_path: Path) -> None:
    run = load_run(cgap_run(tmp_path))
    segments = phase_segments([*run.steps, *run.epochs, *run.events], run.last_step)
    assert [s.partition for s in segments] == [1, 2, 3, 4, 1, 2, 3, 4, None]
    assert [s.round for s in segments] == [1, 1, 1, 1, 2, 2, 2, 2, None]
    assert [s.start for s in segments] == [0, 100, 200, 300, 400, 500, 600, 700, 800]
    assert segments[-1].name == "finetune" and segments[-1].end == 1000


def test_dense_run_without_partitions(tmp_path: Path) -> None:
    records = metric_records(500, plain_phase, {}, lambda step: 0.0)
    records.append(
        {
            "type": "final",
            "test_acc": 0.91,
            "test_loss": 0.25,
            "sparsity": 0.0,
            "params_total": 5000,
            "params_kept": 5000,
            "train_seconds": 42.0,
            "layers": layers(3, 0.0),
        }
    )
    recipe = {"method": {"name": "dense"}, "model": {"name": "mlp"}, "data": {"name": "synthetic"}}
    report = write_report(write_run(tmp_path / "dense", recipe, records))
    check_links(report)
    text = report.read_text()
    assert text.startswith("# dense: mlp on synthetic")
    assert "91.00 %" in text and "42 s" in text and "| mask-change events | 0 |" in text
    assert "| best test accuracy (any epoch; masks never final) | 82.00 % (epoch 10) |" in text


def test_unfinished_run_with_truncated_line(tmp_path: Path) -> None:
    run_dir = cgap_run(tmp_path, finished=False, tail='{"type": "step", "step": 44')
    report = write_report(run_dir)
    links = check_links(report)
    assert "layers.png" not in links
    text = report.read_text()
    assert "Unfinished run" in text and "step 430" in text
    assert "| best test accuracy (any epoch; masks never final) | 81.25 % (epoch 8) |" in text
    assert "Skipped 1 unreadable line" in text
    assert "No per-layer sparsity yet" in text


def test_planned_length_of_unfinished_gap_run(tmp_path: Path) -> None:
    run = load_run(cgap_run(tmp_path, finished=False))
    assert planned_end(run) == pytest.approx(1000)  # 20 epochs x 50 steps
    del run.recipe["training"]  # GaP may leave it out: 2 rounds x 4 partitions x 2 + 4 finetune
    assert planned_end(run) == pytest.approx(1000)


def test_unfinished_run_uses_sparsity_json(tmp_path: Path) -> None:
    run_dir = cgap_run(tmp_path, finished=False)
    (run_dir / "sparsity.json").write_text(json.dumps({"layers": layers(4, 0.5), "overall": 0.5}))
    report = write_report(run_dir)
    assert "layers.png" in check_links(report)
    assert "From the sparsity.json" in report.read_text()


def test_minimal_run_without_recipe(tmp_path: Path) -> None:
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"type": "step", "step": 5, "loss": 1.0}) + "\n")
    report = write_report(run_dir)
    check_links(report)
    text = report.read_text()
    assert "unknown method" in text and "recipe.yaml` not found" in text


def test_empty_metrics_is_a_clear_error(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "empty", CGAP_RECIPE, [])
    with pytest.raises(ValueError, match="metrics.jsonl holds no metric records"):
        write_report(run_dir)


def test_missing_metrics_and_directory(tmp_path: Path) -> None:
    (tmp_path / "nometrics").mkdir()
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        write_report(tmp_path / "nometrics")
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        write_report(tmp_path / "absent")


def test_pgap_merges_are_reported(tmp_path: Path) -> None:
    """Merge records (bytes exchanged, waiting time) of a P-GaP run appear in report.md."""
    import json

    from growprune.train.run_report import write_report

    records = [
        {
            "type": "epoch",
            "epoch": 1,
            "step": 10,
            "train_loss": 1.0,
            "train_acc": 0.5,
            "test_loss": 1.0,
            "test_acc": 0.5,
            "sparsity": 0.8,
            "phase": "finetune",
            "phase_name": "finetune",
            "time": 1.0,
        },
        {
            "type": "merge",
            "round": 1,
            "step": 10,
            "bytes_exchanged": 123456,
            "wait_seconds": 0.25,
            "merge_seconds": 0.01,
        },
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = write_report(tmp_path).read_text()
    assert "P-GaP merges" in text and "123,456" in text and "250.0 ms" in text
