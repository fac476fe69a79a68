"""The SSD model, the detection task through the engine, and the CLI on a folder it has not seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from growprune.cli import main
from growprune.models import build_model
from growprune.sparsity.targets import find_targets
from growprune.tasks.detection.model import SSD, default_boxes
from tests.tasks.detection.tiny_coco import write_tiny_coco

REPO = Path(__file__).resolve().parents[2]


def test_default_boxes_hand_case() -> None:
    boxes = default_boxes([2, 1], min_scale=0.2, max_scale=0.6, aspect_ratios=(4.0,))
    assert boxes.shape == (2 * 2 * 4 + 4, 4)
    # first cell of the 2x2 map: centre (0.25, 0.25); scale 0.2, then sqrt(0.2 * 0.6), then ratio 4
    assert boxes[0].tolist() == pytest.approx([0.25, 0.25, 0.2, 0.2])
    assert boxes[1].tolist() == pytest.approx([0.25, 0.25, 0.12**0.5, 0.12**0.5])
    assert boxes[2].tolist() == pytest.approx([0.25, 0.25, 0.4, 0.1])
    assert boxes[3].tolist() == pytest.approx([0.25, 0.25, 0.1, 0.4])
    assert boxes[4].tolist()[:2] == pytest.approx([0.75, 0.25])  # next cell along the row
    # the 1x1 map: scale 0.6, the extra box sqrt(0.6 * 1)
    assert boxes[-4].tolist() == pytest.approx([0.5, 0.5, 0.6, 0.6])
    assert boxes[-3].tolist() == pytest.approx([0.5, 0.5, 0.6**0.5, 0.6**0.5])


def test_ssd_shapes_and_every_conv_is_a_target() -> None:
    model = build_model("ssd", num_classes=3, image_size=64, widths=[8, 8, 16], extra_width=16, scales=4)
    assert isinstance(model, SSD) and model.grid_sizes == [8, 4, 2, 1]
    logits, deltas = model(torch.randn(2, 3, 64, 64))
    n = 4 * (64 + 16 + 4 + 1)
    assert logits.shape == (2, n, 4) and deltas.shape == (2, n, 4) and model.default_boxes.shape == (n, 4)
    convs = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert {t.name for t in find_targets(model)} == convs
    assert "default_boxes" not in model.state_dict()  # rebuilt from the arguments, not stored
    with pytest.raises(ValueError, match="built for 64x64 inputs got 32x32"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no room"):
        SSD(image_size=32, scales=6)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "growprune", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line], captured.out


def test_list_shows_the_detection_datasets_and_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, out = run_main(["list"], capsys)
    assert "coco, coco_shapes (detection" in out and "detection/cgap-quick" in out


@pytest.mark.trajectory
def test_a_folder_not_made_by_the_generator_trains_with_data_root(tmp_path: Path) -> None:
    root = write_tiny_coco(tmp_path / "foreign")
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "detection/cgap-quick",
        "--set",
        f"data.root={root}",
        "--set",
        "method.finetune_epochs=1",
        "--set",
        "method.epochs_per_phase=1",
        "--set",
        "output.tensorboard=false",
        "--smoke",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    labels = [line.partition(": ")[0] for line in result.stdout.splitlines()]
    assert labels == ["done", "report"], result.stdout  # pycocotools printed nothing on stdout
    assert "val mAP" in result.stdout and "sparsity 0.8000" in result.stdout
    detections = (out / "detections.json").read_text()
    assert '"category_id": 11' in detections or '"category_id": 42' in detections or detections == "[]"
    assert (out / "detections.png").is_file()
    report = (out / "report" / "report.md").read_text()
    assert "Detection (COCO mAP" in report and "detections.png" in report


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["data.name=coco", "data.root=null"], "data.name coco needs the dataset folder"),
        (["data.root=/nonexistent/coco"], "/nonexistent/coco: no such folder"),
        (["model.name=small_cnn", "model.args={}"], "not a detector"),
        (["data.random_crop=true"], "random_crop does not move the boxes"),
        (["data.args.imagesize=64"], "unknown argument(s) imagesize"),
        (["data.root=/nonexistent/coco", "data.args.n_train=5"], "n_train shape the generated set"),
    ],
)
def test_detection_mistakes_are_one_line(
    tmp_path: Path,
    sets: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GROWPRUNE_COCO", raising=False)
    args = [item for s in sets for item in ("--set", s)]
    code, lines, _ = run_main(
        ["train", "detection/dense", *args, "--smoke", "--out", str(tmp_path / "run"), "--no-progress"],
        capsys,
    )
    assert code != 0 and len(lines) == 1, lines
    assert expected in lines[0]
