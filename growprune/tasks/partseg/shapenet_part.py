"""ShapeNet-Part (Yi et al. 2016) as PointNet++ users download it, read from its own folder layout.

The layout of ``shapenetcore_partanno_segmentation_benchmark_v0_normal/``::

    synsetoffset2category.txt                  one "<Category> <synset>" per line
    <synset>/<shape id>.txt                    rows "x y z nx ny nz part" (or "x y z part")
    train_test_split/shuffled_{train,val,test}_file_list.json
                                               JSON lists of "shape_data/<synset>/<shape id>"

Part labels are the benchmark's global ids 0-49; each category owns a contiguous range
(:data:`CATEGORIES`). Whichever categories ``synsetoffset2category.txt`` lists are read, so a
folder with two categories is a valid dataset. The model always sees the 16-way category one-hot
and 50 part logits, so a model trained on a subset keeps the benchmark's numbering.

Each shape is sampled once to ``points`` points (seeded by the shape's index, so the same folder
gives the same tensors on every run), centred on its centroid and scaled into the unit sphere,
the normalisation of the PointNet++ data pipeline. Random scaling and jitter are applied per
batch by :class:`PointAugment`, from the loader's (seed, epoch, batch) generators.

Every file is read through :mod:`growprune.bounded`: only regular files (a FIFO or a symlink
to ``/dev/zero`` is refused by name before it is opened), each below a size cap
(:data:`MAX_SHAPE_BYTES`, :data:`MAX_LIST_BYTES`), split files at most
:data:`~growprune.bounded.MAX_JSON_DEPTH` deep. Shape files are checked row by row (every
row has the first row's column count; the error names the first bad line) and part labels are
checked as numbers, before any cast, and shown as written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from growprune.bounded import read_json, read_text
from growprune.errors import UsageError

__all__ = [
    "CATEGORIES",
    "FOLDER_NAME",
    "MAX_LIST_BYTES",
    "MAX_SHAPE_BYTES",
    "NUM_CATEGORIES",
    "NUM_PARTS",
    "ROOT_ENV_VAR",
    "Category",
    "PartDatasetError",
    "PartSegSplit",
    "PointAugment",
    "category_of_parts",
    "load_split",
    "read_categories",
    "read_shape",
    "read_split_list",
]

FOLDER_NAME = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
ROOT_ENV_VAR = "GROWPRUNE_SHAPENET_PART"
SPLITS = ("train", "val", "test")
NUM_PARTS = 50
# A benchmark shape file holds ~2,700 rows of ~60 bytes (160 kB); the split lists are < 1 MB.
MAX_SHAPE_BYTES = 64 << 20
MAX_LIST_BYTES = 64 << 20
_MAX_COORDINATE = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Category:
    """One benchmark category: its name, its ShapeNet synset and its global part ids."""

    name: str
    synset: str
    first_part: int
    num_parts: int

    @property
    def parts(self) -> range:
        return range(self.first_part, self.first_part + self.num_parts)


def _table() -> tuple[Category, ...]:
    rows = [
        ("Airplane", "02691156", 4),
        ("Bag", "02773838", 2),
        ("Cap", "02954340", 2),
        ("Car", "02958343", 4),
        ("Chair", "03001627", 4),
        ("Earphone", "03261776", 3),
        ("Guitar", "03467517", 3),
        ("Knife", "03624134", 2),
        ("Lamp", "03636649", 4),
        ("Laptop", "03642806", 2),
        ("Motorbike", "03790512", 6),
        ("Mug", "03797390", 2),
        ("Pistol", "03948459", 3),
        ("Rocket", "04099429", 3),
        ("Skateboard", "04225987", 3),
        ("Table", "04379243", 3),
    ]
    out, first = [], 0
    for name, synset, count in rows:
        out.append(Category(name, synset, first, count))
        first += count
    return tuple(out)


# The benchmark's 16 categories in its order; part ids run 0-49 through them (Airplane 0-3, ...,
# Table 47-49), as in the PointNet++ part-segmentation code's seg_classes table.
CATEGORIES: tuple[Category, ...] = _table()
NUM_CATEGORIES = len(CATEGORIES)
_BY_NAME = {c.name.lower(): i for i, c in enumerate(CATEGORIES)}
assert CATEGORIES[-1].parts.stop == NUM_PARTS


def category_of_parts() -> torch.Tensor:
    """(50,) int64: the category index of each global part id."""
    out = torch.empty(NUM_PARTS, dtype=torch.long)
    for i, c in enumerate(CATEGORIES):
        out[c.first_part : c.first_part + c.num_parts] = i
    return out


class PartDatasetError(UsageError, ValueError):
    """A missing or malformed ShapeNet-Part folder; the message names the file and what was expected."""


def _fail(path: Path, expected: str) -> PartDatasetError:
    return PartDatasetError(f"{path}: {expected}")


def read_categories(root: Path) -> list[tuple[int, str]]:
    """(category index, synset folder) of each line of ``synsetoffset2category.txt``."""
    path = root / "synsetoffset2category.txt"
    if not os.path.lexists(path):  # a symlink loop or dangling link is named by read_text below
        raise PartDatasetError(
            f"{path} not found: data.root (or ${ROOT_ENV_VAR}) must be the {FOLDER_NAME}/ folder itself, "
            "holding synsetoffset2category.txt, one folder per synset and train_test_split/"
        )
    out: list[tuple[int, str]] = []
    text = read_text(path, max_bytes=MAX_LIST_BYTES, fail=_fail, errors="replace", what="a category list")
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[0].lower() not in _BY_NAME:
            names = ", ".join(c.name for c in CATEGORIES)
            raise _fail(
                path,
                f"line {number} is {line.strip()!r}; expected '<Category> <synset>', a category of {names}",
            )
        index = _BY_NAME[fields[0].lower()]
        if any(index == seen for seen, _ in out):
            raise _fail(path, f"line {number}: category {fields[0]} is listed twice")
        out.append((index, fields[1]))
    if not out:
        raise _fail(path, "no categories listed; expected lines '<Category> <synset>'")
    return out


def read_split_list(root: Path, split: str) -> list[tuple[str, str]]:
    """(synset, shape id) of each entry ``shape_data/<synset>/<id>`` of one split file."""
    path = root / "train_test_split" / f"shuffled_{split}_file_list.json"
    expected = "a JSON list of 'shape_data/<synset>/<id>' entries"
    entries = read_json(
        path,
        max_bytes=MAX_LIST_BYTES,
        fail=_fail,
        expected=expected,
        missing=f"not found; expected {expected}",
    )
    if not isinstance(entries, list):
        raise _fail(path, f"expected {expected}")
    out = []
    for entry in entries:
        parts = entry.split("/") if isinstance(entry, str) else []
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise _fail(path, f"entry {entry!r}; expected 'shape_data/<synset>/<id>'")
        out.append((parts[1], parts[2]))
    return out


def _nth_row_line(lines: list[str], row: int) -> int:
    """The 1-based line number of data row ``row`` (blank lines hold no row)."""
    for number, line in enumerate(lines, 1):
        if line.split():
            if row == 0:
                return number
            row -= 1
    return len(lines)


# A number as the benchmark writes it: decimal digits with an optional point and exponent (and
# nan/inf, refused afterwards with their own message). Python's float() accepts more ("1_0" is
# 10.0, non-ASCII digits, surrounding text), so every token is held to this first.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.ASCII | re.I)
# Text made only of these characters holds no token float() reads differently from _NUMBER.
_UNUSUAL = re.compile(r"[^0-9eE.+\-\s]")


def _check_numbers(path: Path, lines: list[str]) -> None:
    """``fail`` naming the first token (and its line) that is not a plain decimal number."""
    for number, line in enumerate(lines, 1):
        for token in line.split():
            if not _NUMBER.fullmatch(token):
                raise _fail(
                    path,
                    f"a value is not a number ({token[:40]!r}, line {number}); "
                    "expected rows 'x y z nx ny nz part' of decimal numbers",
                )


def read_shape(path: Path, category: Category) -> tuple[np.ndarray, np.ndarray]:
    """(points (M, 3 or 6) float32, global part labels (M,) int64) of one shape file.

    Rows are ``x y z nx ny nz part`` (7 columns) or ``x y z part`` (4), every row as many as the
    first; labels may be written as integers or as floats ("12.000000"), and must lie in the
    category's part range. Errors name the file, the first bad line and the value as written.
    """
    text = read_text(
        path,
        max_bytes=MAX_SHAPE_BYTES,
        fail=_fail,
        missing="not found (listed in the split files)",
        what="a shape file",
    )
    lines = text.splitlines()
    counts = [len(line.split()) for line in lines]
    cols = next((c for c in counts if c), 0)
    if cols not in (4, 7):
        what = f"first row has {cols} columns" if cols else "holds no rows"
        raise _fail(path, f"{what}; expected 'x y z nx ny nz part' (7) or 'x y z part' (4)")
    for number, count in enumerate(counts, 1):
        if count and count != cols:
            raise _fail(
                path,
                f"line {number} has {count} columns, the first row {cols}; expected {cols} in every row",
            )
    tokens = text.split()
    if _UNUSUAL.search(text):  # float() reads "1_0", "١" and "infinity" too: check token by token
        _check_numbers(path, lines)
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        _check_numbers(path, lines)
        raise _fail(path, "a value is not a number; expected rows 'x y z nx ny nz part'") from None
    rows = values.reshape(-1, cols)

    def written(row: int, col: int) -> str:
        return tokens[row * cols + col]

    finite = np.isfinite(rows)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise _fail(path, f"line {_nth_row_line(lines, row)} holds the non-finite value {written(row, col)}")
    huge = np.abs(rows[:, :-1]) > _MAX_COORDINATE
    if huge.any():
        row, col = (int(i) for i in np.argwhere(huge)[0])
        raise _fail(
            path,
            f"line {_nth_row_line(lines, row)}: coordinate {written(row, col)} is beyond float32's range; "
            "expected coordinates of a shape (the benchmark's lie within [-1, 1])",
        )
    labels = rows[:, -1]
    first, last = category.first_part, category.first_part + category.num_parts - 1
    whole = labels == np.round(labels)
    if not whole.all():
        row = int(np.argmin(whole))
        raise _fail(
            path,
            f"part label {written(row, cols - 1)} (line {_nth_row_line(lines, row)}) is not a whole number: "
            f"part labels must be whole numbers, {category.name}'s parts {first}-{last}",
        )
    bad = (labels < first) | (labels > last)
    if bad.any():
        row = int(np.argmax(bad))
        raise _fail(
            path,
            f"part label {written(row, cols - 1)} is outside {category.name}'s parts {first}-{last} "
            f"(line {_nth_row_line(lines, row)})",
        )
    return rows[:, :-1].astype(np.float32), labels.astype(np.int64)


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre xyz on the centroid and scale into the unit sphere; normals are left as they are."""
    out = points.copy()
    xyz = out[:, :3] - out[:, :3].mean(axis=0)
    radius = float(np.sqrt((xyz**2).sum(axis=1)).max())
    out[:, :3] = xyz / (radius if radius > 0 else 1.0)
    return out


def sample_indices(count: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` row indices: without repetition when the shape has enough points, else all rows
    plus random repeats (so every shape contributes exactly ``n`` points)."""
    if count >= n:
        return rng.permutation(count)[:n]
    return np.concatenate([rng.permutation(count), rng.integers(0, count, n - count)])


@dataclass
class PartSegSplit:
    """Shapes of one split, sampled to a fixed number of points.

    Attributes:
        x: (S, N, C) float32 -- xyz (normalised), then the normals when used.
        y: (S, N) int64 global part ids.
        category: (S,) int64 category index into :data:`CATEGORIES`.
        names: "<synset>/<id>" of each shape.
    """

    x: torch.Tensor
    y: torch.Tensor
    category: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> PartSegSplit:
        return PartSegSplit(self.x.to(device), self.y.to(device), self.category.to(device), self.names)


def load_split(
    root: str | os.PathLike[str],
    split: str,
    *,
    points: int = 2048,
    normals: bool = True,
    seed: int = 0,
    limit: int | None = None,
) -> PartSegSplit:
    """Read one split of a ShapeNet-Part folder (only the categories the folder lists; the
    first ``limit`` of their shapes when given).

    Raises:
        PartDatasetError: a missing or malformed file (named), or a split with no shapes of the
            listed categories.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise PartDatasetError(f"{base}: not a directory; expected the {FOLDER_NAME}/ folder")
    listed = {synset: index for index, synset in read_categories(base)}
    xs, ys, cats, names = [], [], [], []
    for synset, shape_id in read_split_list(base, split):
        if synset not in listed:
            continue  # a category synsetoffset2category.txt does not list is not used
        if limit is not None and len(names) >= limit:
            break
        category = CATEGORIES[listed[synset]]
        pts, labels = read_shape(base / synset / f"{shape_id}.txt", category)
        if not normals:
            pts = pts[:, :3]
        elif pts.shape[1] != 6:
            raise _fail(
                base / synset / f"{shape_id}.txt",
                "has no normals (4 columns); expected 'x y z nx ny nz part', or set data.args.normals: false",
            )
        rng = np.random.default_rng([seed, len(names), 0x5E6])
        idx = sample_indices(len(pts), points, rng)
        xs.append(normalize(pts)[idx])
        ys.append(labels[idx])
        cats.append(listed[synset])
        names.append(f"{synset}/{shape_id}")
    if not names:
        split_file = base / "train_test_split" / f"shuffled_{split}_file_list.json"
        raise _fail(split_file, "lists no shape of the categories in synsetoffset2category.txt")
    return PartSegSplit(
        torch.from_numpy(np.stack(xs)),
        torch.from_numpy(np.stack(ys)),
        torch.tensor(cats, dtype=torch.long),
        names,
    )


@dataclass(frozen=True)
class PointAugment:
    """Per-shape random anisotropic scaling of xyz and clipped Gaussian jitter (PointNet++'s
    part-segmentation augmentation). Works on (B, N, C) batches; channels past xyz are kept."""

    scale_low: float = 0.8
    scale_high: float = 1.25
    jitter_sigma: float = 0.01
    jitter_clip: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.scale_low <= self.scale_high:
            raise ValueError(
                f"augment scale must satisfy 0 < low <= high, got {self.scale_low}, {self.scale_high}"
            )
        if self.jitter_sigma < 0 or self.jitter_clip < 0:
            raise ValueError("augment jitter sigma and clip must be >= 0")

    @property
    def is_identity(self) -> bool:
        return self.scale_low == self.scale_high == 1.0 and self.jitter_sigma == 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, n, _ = x.shape
        low, high = self.scale_low, self.scale_high
        scale = (low + (high - low) * torch.rand(b, 1, 3, generator=generator)).to(x.device, x.dtype)
        noise = torch.randn(b, n, 3, generator=generator).to(x.device, x.dtype) * self.jitter_sigma
        noise = noise.clamp(-self.jitter_clip, self.jitter_clip)
        return torch.cat([x[..., :3] * scale + noise, x[..., 3:]], dim=-1)
