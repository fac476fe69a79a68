"""A ShapeNet-Part folder written by hand, not by the generator: two categories (Knife, Mug),
"x y z part" rows without normals, labels as integers in one file and floats in another, and
split files that also list a category the folder does not include (as the real ones list all 16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _rows(rng: np.random.Generator, first_part: int, count: int, as_float: bool) -> str:
    lines = []
    for i in range(count):
        part = first_part + (i % 2)
        x, y, z = rng.normal(size=3) + (part - first_part) * 2.0
        label = f"{float(part):.6f}" if as_float else str(part)
        lines.append(f"{x:.4f} {y:.4f} {z:.4f} {label}")
    return "\n".join(lines) + "\n"


def write_handmade(root: Path, shapes: int = 6, points: int = 40) -> Path:
    """Write the folder at ``root``; ``shapes`` per category, split 4 / 1 / 1."""
    rng = np.random.default_rng(11)
    root.mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("Knife\t03624134\nMug\t03797390\n")
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for synset, first in (("03624134", 22), ("03797390", 36)):
        (root / synset).mkdir()
        for k in range(shapes):
            shape_id = f"{synset[-3:]}shape{k:02d}"
            (root / synset / f"{shape_id}.txt").write_text(_rows(rng, first, points, as_float=k % 2 == 0))
            split = "train" if k < shapes - 2 else ("val" if k == shapes - 2 else "test")
            splits[split].append(f"shape_data/{synset}/{shape_id}")
    for split, entries in splits.items():
        entries.insert(1, "shape_data/02691156/not_in_this_folder")  # an airplane: not listed, skipped
        (root / "train_test_split").mkdir(exist_ok=True)
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return root
