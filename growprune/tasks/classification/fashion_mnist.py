"""Fashion-MNIST from the four local IDX ``.gz`` files.

There is no downloader on purpose: CI and the dev machines have no general internet access, and
the Debian package ``dataset-fashion-mnist`` installs the files system-wide. The loader looks
in, in order: an explicit ``data_dir``, ``$GROWPRUNE_DATA``, then
``/usr/share/datasets/fashion-mnist/``. Each location ``d`` is checked as ``d`` itself and as
``d/fashion-mnist`` so ``$GROWPRUNE_DATA`` can be a root holding several datasets.

Every file is checked against a SHA-256 before use. We accept either the digest of the ``.gz``
file as shipped by Debian, or the digest of its decompressed IDX bytes: the latter does not
depend on how the file was gzipped, so a copy re-compressed elsewhere (Debian's ``.gz`` files
are not byte-identical to upstream's) still verifies as long as the images are the same.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from growprune.data.dataset import InMemoryDataset
from growprune.data.errors import DatasetCorruptError, DatasetNotFoundError
from growprune.tasks.classification.idx import MAX_IDX_BYTES, IDXFormatError, read_idx_file

__all__ = [
    "CLASSES",
    "DEFAULT_DIR",
    "ENV_VAR",
    "FILES",
    "MAX_UNVERIFIED_ITEMS",
    "MEAN",
    "STD",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "candidate_dirs",
    "clear_cache",
    "find_data_dir",
    "load_fashion_mnist",
    "load_fashion_mnist_raw",
]

ENV_VAR = "GROWPRUNE_DATA"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
SUBDIR = "fashion-mnist"

# Pixel mean/std of the 60k training images after scaling to [0, 1] (computed from the files).
MEAN = 0.2860406
STD = 0.3530242

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class _FileSpec:
    name: str
    magic: int  # the 4-byte IDX magic: 0x801 for uint8 vectors, 0x803 for uint8 3-D arrays
    shape: tuple[int, ...]
    gz_sha256: str  # digest of the .gz as installed by dataset-fashion-mnist (Debian)
    raw_sha256: str  # digest of the decompressed IDX bytes, independent of gzip settings


FILES: dict[str, _FileSpec] = {
    "train_images": _FileSpec(
        "train-images-idx3-ubyte.gz",
        0x00000803,
        (60000, 28, 28),
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": _FileSpec(
        "train-labels-idx1-ubyte.gz",
        0x00000801,
        (60000,),
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": _FileSpec(
        "t10k-images-idx3-ubyte.gz",
        0x00000803,
        (10000, 28, 28),
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": _FileSpec(
        "t10k-labels-idx1-ubyte.gz",
        0x00000801,
        (10000,),
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

FILE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FILES.values())

# The most items (images or labels) one file may declare when ``verify`` is off (with it, the
# released counts apply): 10x the training set, 470 MB of uint8 images and 1.9 GB once made
# float32 for training. A forged or mistaken header is refused from its count alone, before
# anything is decompressed or allocated.
MAX_UNVERIFIED_ITEMS = 10 * 60000


def candidate_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories searched, in order, without duplicates.

    An explicit `data_dir` is the only place searched: a user who names a directory and silently
    gets the files from somewhere else would train on data they did not choose.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / SUBDIR]
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser())
    out: list[Path] = []
    for root in roots:
        for d in (root, root / SUBDIR):
            if d not in out:
                out.append(d)
    if DEFAULT_DIR not in out:
        out.append(DEFAULT_DIR)
    return out


def _not_found_message(searched: list[Path]) -> str:
    partial = []
    for d in searched:
        present = [n for n in FILE_NAMES if os.path.lexists(d / n)]
        if present:
            missing = [n for n in FILE_NAMES if n not in present]
            partial.append(f"{d} lacks {', '.join(missing)}")
    hint = f" ({'; '.join(partial)})" if partial else ""
    return (
        f"Fashion-MNIST not found in {', '.join(str(d) for d in searched)}{hint}. "
        f"Get it with `apt-get install dataset-fashion-mnist` (files land in {DEFAULT_DIR}/), "
        f"or place {', '.join(FILE_NAMES)} in a directory passed as --data-dir or "
        f"${ENV_VAR}."
    )


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """First searched directory that holds all four files, else :class:`DatasetNotFoundError`.

    A name that exists but is no regular file (a FIFO, a symlink to a device, a symlink loop or a
    dangling symlink) counts as present, so the loader then names it, instead of "not found"
    sending the user to reinstall."""
    searched = candidate_dirs(data_dir)
    for d in searched:
        if all(os.path.lexists(d / n) for n in FILE_NAMES):
            return d
    raise DatasetNotFoundError(_not_found_message(searched))


def _corrupt(path: Path, why: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"{path} is corrupt ({why}). Re-get it with "
        f"`apt-get install --reinstall dataset-fashion-mnist`, or replace it with a fresh copy "
        f"of {path.name} from the Fashion-MNIST release."
    )


def _load_file(path: Path, spec: _FileSpec, verify: bool) -> np.ndarray:
    """Read, verify and decode one file, in memory bounded by the file's own header.

    The IDX header is read first and checked against ``spec`` before any payload is
    decompressed: the magic always, the item shape (28 x 28 images, scalar labels) always, since
    the models are built for it and nothing else, and the item count only with ``verify``. Only
    then is exactly the declared payload streamed (see
    :func:`growprune.tasks.classification.idx.read_idx_file`), and its digest compared (with
    ``verify``): a gzip bomb or a forged header cannot make the loader hold more than the declared
    payload.
    """

    def check_header(magic: int, dims: tuple[int, ...]) -> None:
        if magic != spec.magic:
            raise _corrupt(path, f"IDX magic 0x{magic:08x}, expected 0x{spec.magic:08x}")
        if verify and dims != spec.shape:
            raise _corrupt(
                path,
                f"shape {dims}, expected {spec.shape}: not the released file, whose SHA-256 it "
                "cannot match; a deliberately modified copy loads with verify: false",
            )
        if dims[1:] != spec.shape[1:]:
            item = "x".join(str(d) for d in spec.shape[1:]) or "a scalar label"
            raise _corrupt(path, f"shape {dims}: items of shape {dims[1:]}, expected {item} per item")
        if dims[0] == 0:
            raise _corrupt(path, f"shape {dims} holds no items")
        if dims[0] > MAX_UNVERIFIED_ITEMS:
            raise _corrupt(
                path,
                f"shape {dims}: {dims[0]:,} items, more than the {MAX_UNVERIFIED_ITEMS:,} a "
                "Fashion-MNIST file may declare (the release has 60,000 and 10,000)",
            )

    limit = int(np.prod(spec.shape)) if verify else MAX_IDX_BYTES
    try:
        read = read_idx_file(path, max_bytes=limit, check_header=check_header)
    except IDXFormatError as exc:
        raise _corrupt(path, str(exc).removeprefix(f"{path}: ")) from exc
    if verify and spec.gz_sha256 != read.file_sha256 and spec.raw_sha256 != read.content_sha256:
        raise _corrupt(path, f"SHA-256 mismatch: content digest {read.content_sha256}")
    return read.array


_CACHE: dict[tuple[Path, bool], dict[str, torch.Tensor]] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget decoded arrays (tests use this; training never needs to)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_fashion_mnist_raw(
    data_dir: str | os.PathLike[str] | None = None, *, verify: bool = True
) -> dict[str, torch.Tensor]:
    """Decoded uint8 images (N, 28, 28) and int64 labels (N,) keyed like :data:`FILES`.

    Cached per (directory, verify) for the life of the process: decoding and hashing cost
    ~1 s, and sweeps / tests build the datasets many times. ``verify=False`` skips checksums
    and the 60000/10000 size checks, for deliberately modified copies.
    """
    d = find_data_dir(data_dir).resolve()
    key = (d, verify)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        arrays = {k: _load_file(d / spec.name, spec, verify) for k, spec in FILES.items()}
        for split in ("train", "test"):
            imgs, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if imgs.shape[0] != labels.shape[0]:
                raise _corrupt(
                    d / FILES[f"{split}_labels"].name,
                    f"{labels.shape[0]} labels for {imgs.shape[0]} images",
                )
            if labels.size and labels.max() >= len(CLASSES):
                raise _corrupt(d / FILES[f"{split}_labels"].name, f"label {labels.max()} out of range")
        out = {
            k: torch.from_numpy(a) if "images" in k else torch.from_numpy(a.astype(np.int64))
            for k, a in arrays.items()
        }
        _CACHE[key] = out
        return out


def _to_dataset(images: torch.Tensor, labels: torch.Tensor, normalize: bool) -> InMemoryDataset:
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)
    pad = 0.0
    if normalize:
        x.sub_(MEAN).div_(STD)
        pad = (0.0 - MEAN) / STD
    return InMemoryDataset(
        x, labels.clone(), num_classes=len(CLASSES), name="fashion_mnist", pad_value=pad, classes=CLASSES
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    normalize: bool = True,
    verify: bool = True,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """(train, test) datasets: float32 inputs (N, 1, 28, 28) and int64 labels.

    With ``normalize`` the pixels are ``(p/255 - MEAN) / STD``; otherwise in [0, 1]. Each call
    returns fresh float tensors (the uint8 decode is what is cached), so callers may modify
    them in place.
    """
    raw = load_fashion_mnist_raw(data_dir, verify=verify)
    train = _to_dataset(raw["train_images"], raw["train_labels"], normalize)
    test = _to_dataset(raw["test_images"], raw["test_labels"], normalize)
    return train, test
