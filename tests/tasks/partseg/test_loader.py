"""The ShapeNet-Part reader: the generated folder, a hand-written one, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from growprune.tasks.partseg.data import load_part_segmentation
from growprune.tasks.partseg.shapenet_part import (
    CATEGORIES,
    PartDatasetError,
    PointAugment,
    category_of_parts,
    load_split,
)
from tests.tasks.partseg.handmade import write_handmade


def test_part_table_is_the_benchmarks() -> None:
    ranges = {c.name: (c.first_part, c.first_part + c.num_parts - 1) for c in CATEGORIES}
    assert ranges["Airplane"] == (0, 3) and ranges["Car"] == (8, 11) and ranges["Earphone"] == (16, 18)
    assert ranges["Lamp"] == (24, 27) and ranges["Motorbike"] == (30, 35) and ranges["Table"] == (47, 49)
    assert {c.name: c.synset for c in CATEGORIES}["Chair"] == "03001627"
    assert category_of_parts()[[0, 12, 37, 49]].tolist() == [0, 4, 11, 15]


def test_reads_the_generated_folder(tiny_root: Path) -> None:
    split = load_split(tiny_root, "train", points=64, seed=0)
    assert split.x.shape == (9, 64, 6) and split.y.shape == (9, 64)
    assert sorted(set(split.category.tolist())) == [8, 11, 15]  # Lamp, Mug, Table
    part_cat = category_of_parts()
    assert (part_cat[split.y] == split.category[:, None]).all()  # every label is its shape's category's
    assert (split.x[..., :3].norm(dim=-1) <= 1 + 1e-5).all()
    whole = load_split(tiny_root, "train", points=96)  # every row of each 96-row file, reordered
    assert torch.allclose(whole.x[..., :3].norm(dim=-1).amax(dim=1), torch.ones(9), atol=1e-5)
    assert whole.x[..., :3].mean(dim=1).abs().max() < 1e-5  # centred on the centroid
    again = load_split(tiny_root, "train", points=64, seed=0)
    assert torch.equal(split.x, again.x) and torch.equal(split.y, again.y)
    assert not torch.equal(split.x, load_split(tiny_root, "train", points=64, seed=1).x)


def test_more_points_than_the_file_has_repeats_rows(tiny_root: Path) -> None:
    split = load_split(tiny_root, "val", points=200, normals=False)
    assert split.x.shape == (3, 200, 3)
    assert len(torch.unique(split.x[0], dim=0)) == 96  # all 96 rows, some twice


def test_handwritten_folder_without_normals(tmp_path: Path) -> None:
    root = write_handmade(tmp_path / "data")
    data = load_part_segmentation(root, points=16, normals=False)
    assert not data.generated and data.root == root
    assert data.train.x.shape == (8, 16, 3)
    assert sorted(set(data.train.y.flatten().tolist())) == [22, 23, 36, 37]
    assert data.test.names == ["03624134/134shape05", "03797390/390shape05"]
    with pytest.raises(PartDatasetError, match=r"134shape00\.txt: has no normals"):
        load_split(root, "train", points=16, normals=True)


def test_env_var_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_handmade(tmp_path / "data")
    monkeypatch.setenv("GROWPRUNE_SHAPENET_PART", str(root))
    data = load_part_segmentation(points=8, normals=False, limit=2)
    assert data.root == root and len(data.train) == 2


def _break(root: Path, what: str) -> str:
    """Damage the hand-made folder one way; returns the file the error must name."""
    knife = root / "03624134" / "134shape00.txt"
    split = root / "train_test_split" / "shuffled_train_file_list.json"
    if what == "no category file":
        (root / "synsetoffset2category.txt").unlink()
        return "synsetoffset2category.txt not found"
    if what == "unknown category":
        (root / "synsetoffset2category.txt").write_text("Spoon 99999999\n")
        return "synsetoffset2category.txt: line 1"
    if what == "bad json":
        split.write_text("[shape_data/")
        return "shuffled_train_file_list.json: not valid JSON"
    if what == "bad entry":
        split.write_text(json.dumps(["03624134/134shape00"]))
        return "shuffled_train_file_list.json: entry"
    if what == "missing shape":
        knife.unlink()
        return "134shape00.txt: not found"
    if what == "label of another category":
        knife.write_text("0 0 0 36\n1 1 1 22\n")
        return "134shape00.txt: part label 36 is outside Knife's parts 22-23"
    if what == "five columns":
        knife.write_text("0 0 0 1 22\n")
        return "134shape00.txt: first row has 5 columns"
    if what == "not a number":
        knife.write_text("0 0 zero 22\n")
        return "134shape00.txt: a value is not a number"
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what",
    [
        "no category file",
        "unknown category",
        "bad json",
        "bad entry",
        "missing shape",
        "label of another category",
        "five columns",
        "not a number",
    ],
)
def test_malformed_folder_is_one_line_naming_the_file(tmp_path: Path, what: str) -> None:
    root = write_handmade(tmp_path / "data")
    expected = _break(root, what)
    with pytest.raises(PartDatasetError) as info:
        load_split(root, "train", points=8, normals=False)
    message = str(info.value)
    assert "\n" not in message and expected in message, message


def test_augment_scales_xyz_only_and_is_seeded() -> None:
    x = torch.ones(2, 5, 6)
    aug = PointAugment(0.8, 1.25, 0.0, 0.0)
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(a[..., 3:], x[..., 3:])
    scale = a[..., :3]
    assert ((scale >= 0.8) & (scale <= 1.25)).all()
    assert torch.equal(scale[:, 0], scale[:, 4])  # one scale per shape and axis
    jitter = PointAugment(1.0, 1.0, 0.01, 0.05)(torch.zeros(4, 100, 3), torch.Generator().manual_seed(1))
    assert 0 < jitter.abs().max() <= 0.05
