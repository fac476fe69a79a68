"""The generator writes exactly the ShapeNet-Part layout, labels in range, reproducibly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from growprune.tasks.partseg.generator import GENERATED_CATEGORIES, generate, generated_root
from growprune.tasks.partseg.shapenet_part import CATEGORIES
from tests.tasks.partseg.conftest import TINY

SYNSETS = {"Mug": "03797390", "Table": "04379243", "Lamp": "03636649"}  # the benchmark's ids


def test_layout_is_the_benchmark_layout(tiny_root: Path) -> None:
    names = sorted(p.name for p in tiny_root.iterdir())
    assert names == sorted([*SYNSETS.values(), "synsetoffset2category.txt", "train_test_split"])
    lines = (tiny_root / "synsetoffset2category.txt").read_text().splitlines()
    assert sorted(tuple(line.split("\t")) for line in lines) == sorted(SYNSETS.items())
    split_dir = tiny_root / "train_test_split"
    assert sorted(p.name for p in split_dir.iterdir()) == [
        f"shuffled_{s}_file_list.json" for s in ("test", "train", "val")
    ]
    entries = {
        s: json.loads((split_dir / f"shuffled_{s}_file_list.json").read_text())
        for s in ("train", "val", "test")
    }
    assert [len(entries[s]) for s in ("train", "val", "test")] == [9, 3, 3]
    everything = [e for s in entries.values() for e in s]
    assert len(set(everything)) == 15  # disjoint splits
    for entry in everything:
        assert re.fullmatch(r"shape_data/\d{8}/[0-9a-f]{32}", entry)
        _, synset, shape_id = entry.split("/")
        assert (tiny_root / synset / f"{shape_id}.txt").is_file()
    assert len(list(tiny_root.glob("*/*.txt"))) == 15


def test_rows_have_unit_normals_and_labels_of_their_category(tiny_root: Path) -> None:
    parts = {c.synset: set(c.parts) for c in CATEGORIES}
    seen: dict[str, set[int]] = {}
    for path in tiny_root.glob("0*/*.txt"):
        rows = np.loadtxt(path)
        assert rows.shape == (96, 7)
        assert np.allclose(np.linalg.norm(rows[:, 3:6], axis=1), 1.0, atol=1e-4)
        labels = rows[:, 6]
        assert (labels == np.round(labels)).all()
        assert set(labels.astype(int)) <= parts[path.parent.name]
        seen.setdefault(path.parent.name, set()).update(labels.astype(int))
    assert seen[SYNSETS["Mug"]] == {36, 37}  # both mug parts occur
    assert seen[SYNSETS["Table"]] >= {47, 48}


def test_same_seed_same_bytes_other_seed_other_shapes(tmp_path: Path, tiny_root: Path) -> None:
    again = generate(tmp_path / "a", **TINY)
    other = generate(tmp_path / "b", **{**TINY, "seed": 4})
    files = sorted(p.relative_to(tiny_root) for p in tiny_root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((tiny_root / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert (other / "train_test_split" / "shuffled_train_file_list.json").read_text() != (
        tiny_root / "train_test_split" / "shuffled_train_file_list.json"
    ).read_text()


def test_generated_once_into_the_cache(tmp_path: Path) -> None:
    settings = {"categories": ("Mug",), "shapes_per_category": 3, "points_per_shape": 32}
    first = generated_root(tmp_path, **settings)
    stamp = (first / "synsetoffset2category.txt").stat().st_mtime_ns
    assert generated_root(tmp_path, **settings) == first
    assert (first / "synsetoffset2category.txt").stat().st_mtime_ns == stamp
    assert first.name == "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    assert [p.name for p in first.parent.parent.iterdir()] == [first.parent.name]  # no temp folder left


def test_every_generated_category_builds() -> None:
    from growprune.tasks.partseg.generator import shape_rows

    for name in GENERATED_CATEGORIES:
        rows = shape_rows(name, np.random.default_rng(0), 64)
        assert rows.shape == (64, 7) and np.isfinite(rows).all()
