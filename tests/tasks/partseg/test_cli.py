"""The part-segmentation task through the command line: a folder in the real ShapeNet-Part
format that the generator did not write trains with ``--set data.root=DIR --smoke``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.partseg.handmade import write_handmade

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "growprune", *args],
        cwd=REPO,
        env={**os.environ, "GROWPRUNE_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.trajectory
def test_unseen_folder_trains_with_data_root(tmp_path: Path) -> None:
    root = write_handmade(tmp_path / "shapenet")
    out = tmp_path / "run"
    result = run_cli(
        "train", "partseg/cgap-quick", "--smoke", "--no-progress", "--out", str(out),
        "--set", f"data.root={root}", "--set", "data.args.normals=false",
        cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("done: test mIoU "), result.stdout
    summary = json.loads((out / "partseg.json").read_text())
    assert summary["data_root"] == str(root) and summary["generated"] is False
    assert sorted(summary["per_category_miou"]) == ["Knife", "Mug"]
    assert (out / "partseg_examples.png").stat().st_size > 0
    assert not (tmp_path / "cache").exists()  # nothing was generated


def test_a_broken_folder_is_one_line(tmp_path: Path) -> None:
    root = write_handmade(tmp_path / "shapenet")
    (root / "03797390" / "390shape01.txt").write_text("0 0 0 7\n")
    result = run_cli(
        "train", "partseg/dense", "--smoke", "--out", str(tmp_path / "run"),
        "--set", f"data.root={root}", "--set", "data.args.normals=false",
        cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "390shape01.txt: part label 7 is outside Mug's parts 36-37" in lines[0], lines


def test_list_shows_the_task() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "growprune", "list"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert "shapenet_part (3-D part segmentation" in result.stdout
    assert "pointnet2_partseg" in result.stdout and "partseg/cgap-quick" in result.stdout
