"""Bounded input (issue 27): every hostile or wrong data file ends in one line naming the file and
the problem, in bounded time and memory -- never a hang, a runaway read, an internal error, or a
silently wrong dataset.

Table-driven, like tests/test_cli_errors.py: each row is (case id, dataset, how to damage a tiny
valid folder -- returning the file name the line must contain --, the fragment the line must
contain, extra loader arguments). A fragment of None means the folder must load. Every row runs in
a forked child (cheap: nothing is imported again) that the parent kills when it runs past
:data:`SECONDS` or its memory grows by more than :data:`MAX_GROWTH`, so a regression to reading a
FIFO, ``/dev/zero`` or a gzip bomb fails this test instead of hanging or exhausting CI.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import signal
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from growprune.cli import describe_failure, main
from growprune.tasks.classification import fashion_mnist as fm
from growprune.tasks.classification.idx import write_idx
from growprune.tasks.detection.coco import load_coco_detection
from growprune.tasks.partseg.shapenet_part import load_split
from tests.tasks.detection.tiny_coco import write_tiny_coco
from tests.tasks.partseg.handmade import write_handmade

SECONDS = 30.0
MAX_GROWTH = 192 << 20  # bytes of resident memory a loader may add for these tiny folders

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform != "linux", reason="needs fork and /proc"
)


# ----------------------------------------------------------------------------- the guarded run
def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def guarded(fn: Callable[[], object]) -> str:
    """Run ``fn`` in a forked child; the outcome as one string: "ok", the CLI's line for the
    exception it raised, "HUNG" or "RUNAWAY MEMORY" (the child is killed in both)."""
    read_end, write_end = os.pipe()
    base = _rss(os.getpid())
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            try:
                result = fn()
                line = f"ok {result}" if result is not None else "ok"
            except BaseException as err:  # noqa: BLE001 - reported to the parent as the CLI would
                line = describe_failure(err, "train")[1]
            os.write(write_end, line.encode("utf-8", "replace")[:16000])
        finally:
            os._exit(0)
    os.close(write_end)
    deadline, outcome = time.monotonic() + SECONDS, None
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            outcome = "HUNG"
        elif _rss(pid) - base > MAX_GROWTH:
            outcome = "RUNAWAY MEMORY"
        if outcome:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        line = pipe.read().decode("utf-8", "replace")
    return outcome or line


# ----------------------------------------------------------------------------- tiny valid folders
def write_fmnist(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6).astype(np.uint8),
        "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 4).astype(np.uint8),
    }
    for key, array in arrays.items():
        write_idx(root / fm.FILES[key].name, array)
    return root


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _zeros_member(size: int) -> bytes:
    """One gzip member of ``size`` zero bytes (compressed ~1000:1, in a few ms per 16 MB)."""
    pack = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [pack.compress(block) for _ in range(size >> 20)]
    return b"".join(out) + pack.flush()


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (1-bit grey) with only a few rows of data:
    what it claims is all a loader may look at before refusing it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(bytes(4 * (1 + (width + 7) // 8)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _swap(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ----------------------------------------------------------------------------- Fashion-MNIST rows
LABELS, IMAGES = fm.FILES["train_labels"].name, fm.FILES["train_images"].name


def fm_extra_members(root: Path) -> str:
    """A valid file followed by 256 MB of zeros in 16 more members (a 256 kB gzip bomb)."""
    path = root / LABELS
    path.write_bytes(path.read_bytes() + _zeros_member(16 << 20) * 16)
    return LABELS


def fm_oversized_member(root: Path) -> str:
    """One member holding the valid content and then 64 MB more (a file larger than its header allows)."""
    body = _idx_bytes(np.zeros(6, np.uint8))
    pack = zlib.compressobj(1, zlib.DEFLATED, 31)
    head, block = pack.compress(body), bytes(1 << 20)
    tail = b"".join(pack.compress(block) for _ in range(64)) + pack.flush()
    (root / LABELS).write_bytes(head + tail)
    return LABELS


def fm_longer_member(root: Path) -> str:
    """One small member with 4 kB more than the header declares: only the stream can tell."""
    body = _idx_bytes(np.zeros(6, np.uint8)) + np.random.default_rng(1).bytes(4096)
    (root / LABELS).write_bytes(gzip.compress(body))
    return LABELS


def fm_short_member(root: Path) -> str:
    body = _idx_bytes(np.zeros((6, 28, 28), np.uint8))[:-100]
    (root / IMAGES).write_bytes(gzip.compress(body))
    return IMAGES


def fm_empty_members(root: Path) -> str:
    """Valid content behind 10,000 empty gzip members (each costs a decompressor, none a byte)."""
    path = root / LABELS
    path.write_bytes(gzip.compress(b"", mtime=0) * 10_000 + path.read_bytes())
    return LABELS


def fm_forged_header(root: Path) -> str:
    """A header declaring 4M images (3.3 GB) in a file of a few bytes."""
    header = bytes([0, 0, 0x08, 3]) + np.asarray([1 << 22, 28, 28], ">u4").tobytes()
    (root / IMAGES).write_bytes(gzip.compress(header + bytes(1000)))
    return IMAGES


def fm_items_past_cap(root: Path) -> str:
    """A labels header declaring 600,001 items (one past the verify-off cap) in a tiny file."""
    header = bytes([0, 0, 0x08, 1]) + np.asarray([fm.MAX_UNVERIFIED_ITEMS + 1], ">u4").tobytes()
    (root / LABELS).write_bytes(gzip.compress(header + bytes(1000)))
    return LABELS


def fm_claim_past_deflate(root: Path) -> str:
    """A header declaring 100,000 images (78 MB, under every cap) in a 1 kB gzip: deflate cannot
    expand 1 kB that far, so it is refused from the sizes before a byte is allocated."""
    header = bytes([0, 0, 0x08, 3]) + np.asarray([100_000, 28, 28], ">u4").tobytes()
    (root / IMAGES).write_bytes(gzip.compress(header + bytes(1000)))
    return IMAGES


def fm_raw_claim_past_file(root: Path) -> str:
    """The same claim in an uncompressed IDX file: the file is its own bound."""
    header = bytes([0, 0, 0x08, 3]) + np.asarray([100_000, 28, 28], ">u4").tobytes()
    (root / IMAGES).write_bytes(header + bytes(1000))
    return IMAGES


def fm_symlink_loop(root: Path) -> str:
    _swap(root / IMAGES, "loop")
    (root / "loop").symlink_to(root / IMAGES)
    return IMAGES


def fm_dangling(root: Path) -> str:
    _swap(root / LABELS, "/nonexistent/labels.gz")
    return LABELS


def fm_tiny_images(root: Path) -> str:
    write_idx(root / IMAGES, np.zeros((6, 2, 2), np.uint8))
    return IMAGES


def fm_wrong_size(root: Path) -> str:
    write_idx(root / IMAGES, np.zeros((6, 32, 32), np.uint8))
    return IMAGES


def fm_dev_zero(root: Path) -> str:
    _swap(root / LABELS, "/dev/zero")
    return LABELS


def fm_fifo(root: Path) -> str:
    _fifo(root / IMAGES)
    return IMAGES


# ----------------------------------------------------------------------------- ShapeNet-Part rows
KNIFE = "03624134/134shape00.txt"  # the first training shape of the hand-made folder (Knife: parts 22-23)
SPLIT = "train_test_split/shuffled_train_file_list.json"


def _shape(text: str) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        (root / KNIFE).write_text(text)
        return "134shape00.txt"

    return damage


def ps_swap(target: str) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        _swap(root / KNIFE, target)
        return "134shape00.txt"

    return damage


def ps_fifo_shape(root: Path) -> str:
    _fifo(root / KNIFE)
    return "134shape00.txt"


def ps_fifo_categories(root: Path) -> str:
    _fifo(root / "synsetoffset2category.txt")
    return "synsetoffset2category.txt"


def ps_categories_loop(root: Path) -> str:
    path = root / "synsetoffset2category.txt"
    _swap(path, str(path))
    return "synsetoffset2category.txt"


def ps_categories_dangling(root: Path) -> str:
    _swap(root / "synsetoffset2category.txt", "gone.txt")
    return "synsetoffset2category.txt"


def ps_split_nul_bytes(root: Path) -> str:
    with open(root / SPLIT, "wb") as file:
        file.truncate(32 << 20)  # sparse: costs no disk, and must cost no memory either
    return "shuffled_train_file_list.json"


def ps_directory_shape(root: Path) -> str:
    (root / KNIFE).unlink()
    (root / KNIFE).mkdir()
    return "134shape00.txt"


def ps_deep_split(root: Path) -> str:
    (root / SPLIT).write_text(_nested(100_000))
    return "shuffled_train_file_list.json"


def ps_deep_entry(root: Path) -> str:
    (root / SPLIT).write_text(f'["shape_data/03624134/134shape00", {_nested(200)}]')
    return "shuffled_train_file_list.json"


# ----------------------------------------------------------------------------- COCO rows
TRAIN_JSON = "annotations/instances_train2017.json"
VAL_JSON = "annotations/instances_val2017.json"


def _annotations(file: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        _edit(root / file, change)
        return Path(file).name

    return damage


def _first_ann(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["annotations"][0][key] = value

    return change


def _claims(width: int, height: int, annotated: bool = True) -> Callable[[Path], str]:
    """Train image a.png (id 101) replaced by a PNG whose header claims ``width`` x ``height``."""

    def damage(root: Path) -> str:
        (root / "train2017" / "a.png").write_bytes(_png(width, height))
        if annotated:
            _edit(root / TRAIN_JSON, lambda d: d["images"][0].update(width=width, height=height))
        return "a.png"

    return damage


def coco_real_png(root: Path) -> str:
    Image.fromarray(np.full((60, 80, 3), 7, np.uint8)).save(root / "train2017" / "a.png")
    return "a.png"


def coco_resized(width: int, height: int) -> Callable[[Path], str]:
    """a.png (annotated 80 x 60) replaced by a real image of another size."""

    def damage(root: Path) -> str:
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / "train2017" / "a.png")
        return "a.png"

    return damage


def coco_swap_image(target: str) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        _swap(root / "train2017" / "a.png", target)
        return "a.png"

    return damage


def coco_sparse_annotations(size: int) -> Callable[[Path], str]:
    """The val annotation file replaced by ``size`` NUL bytes (sparse: no disk, and no memory
    may be spent on it either)."""

    def damage(root: Path) -> str:
        with open(root / VAL_JSON, "wb") as file:
            file.truncate(size)
        return "instances_val2017.json"

    return damage


def _duplicate_id(section: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document[section].append({**document[section][0]})

    return change


def _repeat_ann_id(document: dict[str, Any]) -> None:
    document["annotations"][1]["id"] = document["annotations"][0]["id"]


def coco_fifo_annotations(root: Path) -> str:
    _fifo(root / VAL_JSON)
    return "instances_val2017.json"


def coco_deep(file: str, text: str) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        (root / file).write_text(text)
        return Path(file).name

    return damage


def _all_boxes(file_change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        for ann in document["annotations"]:
            file_change(ann)

    return change


def _degenerate(ann: dict[str, Any]) -> None:
    ann["bbox"][2] = 0


def _crowd(ann: dict[str, Any]) -> None:
    ann["iscrowd"] = 1


def _deep_info(document: dict[str, Any]) -> None:
    document["info"] = json.loads(_nested(300))


# ----------------------------------------------------------------------------- the table
Damage = Callable[[Path], str]
# (case id, dataset, damage -> file the line names, fragment the line must contain, loader kwargs)
CASES: list[tuple[str, str, Damage, str | None, dict[str, Any]]] = [
    # 1. gzip: stream the declared payload only; more (members, bytes) or less is an error
    ("gzip-extra-members", "fmnist", fm_extra_members, "another gzip member", {}),
    ("gzip-oversized-member", "fmnist", fm_oversized_member, "more than the IDX payload", {}),
    ("gzip-member-longer-than-header", "fmnist", fm_longer_member, "more content after byte 14", {}),
    ("gzip-member-shorter-than-header", "fmnist", fm_short_member, "ends early", {}),
    ("gzip-empty-members-first", "fmnist", fm_empty_members, "holds an empty gzip member", {}),
    ("gzip-forged-header", "fmnist", fm_forged_header, "4,194,304 items, more than the 600,000", {}),
    ("fmnist-items-past-cap", "fmnist", fm_items_past_cap, "600,001 items, more than the 600,000", {}),
    ("gzip-claim-past-deflate-ratio", "fmnist", fm_claim_past_deflate, "deflate expands at most 1032:1", {}),
    ("raw-claim-past-file-size", "fmnist", fm_raw_claim_past_file, "but the file has 1,016 bytes", {}),
    ("fmnist-tiny-images", "fmnist", fm_tiny_images, "expected 28x28 per item", {}),
    ("fmnist-wrong-image-size", "fmnist", fm_wrong_size, "expected 28x28 per item", {}),
    ("fmnist-fine", "fmnist", lambda root: "", None, {}),
    # 2. regular files only, checked before open
    ("fmnist-dev-zero", "fmnist", fm_dev_zero, "a symlink to /dev/zero, a character device", {}),
    ("fmnist-fifo", "fmnist", fm_fifo, "a FIFO", {}),
    ("shape-dev-zero", "partseg", ps_swap("/dev/zero"), "a symlink to /dev/zero, a character device", {}),
    ("shape-dev-urandom", "partseg", ps_swap("/dev/urandom"), "a symlink to /dev/urandom", {}),
    ("shape-fifo", "partseg", ps_fifo_shape, "a FIFO", {}),
    ("category-file-fifo", "partseg", ps_fifo_categories, "a FIFO", {}),
    # symlinks that exist but never resolve are named as such, not "not found ... reinstall"
    ("fmnist-symlink-loop", "fmnist", fm_symlink_loop, "a symlink loop", {}),
    ("fmnist-dangling-symlink", "fmnist", fm_dangling, "a dangling symlink to /nonexistent/labels.gz", {}),
    ("category-file-symlink-loop", "partseg", ps_categories_loop, "a symlink loop", {}),
    ("category-file-dangling", "partseg", ps_categories_dangling, "a dangling symlink to gone.txt", {}),
    ("coco-image-symlink-loop", "coco", coco_swap_image("a.png"), "a symlink loop", {}),
    ("shape-is-a-directory", "partseg", ps_directory_shape, "a directory, not a regular file", {}),
    ("coco-image-dev-zero", "coco", coco_swap_image("/dev/zero"), "a character device", {}),
    ("coco-annotations-fifo", "coco", coco_fifo_annotations, "a FIFO", {}),
    # 3. images: pixel limit from the header before decoding; size as annotated
    ("png-claims-12000x12000", "coco", _claims(12000, 12000), "12000x12000 = 144,000,000 pixels", {}),
    ("png-claims-30000x30000", "coco", _claims(30000, 30000), "900000000 pixels", {}),
    (
        "png-bomb-past-pillow",
        "coco",
        _claims(20000, 20000),
        "decompression bomb",
        {"max_image_pixels": 10**9},
    ),
    ("png-header-unlike-annotation", "coco", _claims(100, 100, annotated=False), "is 100x100 pixels", {}),
    ("png-real-small-is-fine", "coco", coco_real_png, None, {}),
    ("image-smaller-than-annotated", "coco", coco_resized(2, 2), "is 2x2 pixels, but", {}),
    ("image-transposed", "coco", coco_resized(60, 80), "is 60x80 pixels, but", {}),
    # 4. JSON depth
    ("annotations-100k-deep", "coco", coco_deep(TRAIN_JSON, _nested(100_000)), "levels deep", {}),
    ("annotations-deep-info", "coco", _annotations(VAL_JSON, _deep_info), "levels deep", {}),
    ("split-100k-deep", "partseg", ps_deep_split, "levels deep", {}),
    # JSON must start like JSON (checked from the first bytes), and the annotation cap is 1 GiB
    ("annotations-nul-bytes", "coco", coco_sparse_annotations(900 << 20), "first non-blank byte is 0x00", {}),
    ("annotations-past-1GiB", "coco", coco_sparse_annotations(3 << 29), "more than the 1,073,741,824", {}),
    ("split-nul-bytes", "partseg", ps_split_nul_bytes, "does not start like JSON", {}),
    ("annotations-blank", "coco", coco_deep(VAL_JSON, " \n" * 100_000), "is empty (or blank)", {}),
    ("split-deep-entry", "partseg", ps_deep_entry, "levels deep", {}),
    # 5. field types
    (
        "string-image-id",
        "coco",
        _annotations(TRAIN_JSON, _first_ann("image_id", "abc")),
        "'image_id' is 'abc'",
        {},
    ),
    (
        "numeric-string-id",
        "coco",
        _annotations(TRAIN_JSON, lambda d: d["images"][0].update(id="101")),
        "'id' is '101'",
        {},
    ),
    (
        "file-name-with-nul",
        "coco",
        _annotations(TRAIN_JSON, lambda d: d["images"][0].update(file_name="a\u0000.png")),
        "'file_name' is 'a\\x00.png'",
        {},
    ),
    (
        "json-integer-of-5000-digits",
        "coco",
        coco_deep(VAL_JSON, '{"images": [], "annotations": [], "categories": [], "x": 1' + "0" * 5000 + "}"),
        "not readable as JSON",
        {},
    ),
    ("bbox-strings", "coco", _annotations(TRAIN_JSON, _first_ann("bbox", ["1", 2, 3, 4])), "4 finite", {}),
    ("bbox-three-values", "coco", _annotations(VAL_JSON, _first_ann("bbox", [1, 2, 3])), "4 finite", {}),
    ("iscrowd-string", "coco", _annotations(TRAIN_JSON, _first_ann("iscrowd", "no")), "'iscrowd'", {}),
    # JSON integers have no bound: one past a float's range is refused, not an OverflowError
    (
        "bbox-integer-10**400",
        "coco",
        _annotations(TRAIN_JSON, _first_ann("bbox", [10**400, 2, 3, 4])),
        "annotations[0] (id 1): 'bbox' is [1000",
        {},
    ),
    (
        "width-integer-10**400",
        "coco",
        _annotations(VAL_JSON, lambda d: d["images"][0].update(width=10**400)),
        "'width' is 1000",
        {},
    ),
    (
        "image-id-past-int64",
        "coco",
        _annotations(TRAIN_JSON, lambda d: d["images"][0].update(id=2**63)),
        "'id' is 9223372036854775808; expected an integer id (64-bit)",
        {},
    ),
    # ids are unique per file: pycocotools keys by id, a repeat silently replaces an entry
    (
        "duplicate-annotation-ids",
        "coco",
        _annotations(VAL_JSON, _repeat_ann_id),
        "annotation id 8 is listed twice",
        {},
    ),
    (
        "duplicate-annotation-entry",
        "coco",
        _annotations(TRAIN_JSON, _duplicate_id("annotations")),
        "annotation id 1 is listed twice",
        {},
    ),
    (
        "duplicate-category-ids",
        "coco",
        _annotations(TRAIN_JSON, _duplicate_id("categories")),
        "category id 42 is listed twice",
        {},
    ),
    (
        "duplicate-category-id-other-name",
        "coco",
        _annotations(VAL_JSON, lambda d: d["categories"].append({"id": 11, "name": "other"})),
        "category id 11 is listed twice",
        {},
    ),
    # 6. box values
    (
        "bbox-1e39",
        "coco",
        _annotations(TRAIN_JSON, _first_ann("bbox", [1e39, 2, 3, 4])),
        "annotation 1: bbox",
        {},
    ),
    ("bbox-nan", "coco", _annotations(VAL_JSON, _first_ann("bbox", [1, float("nan"), 3, 4])), "4 finite", {}),
    (
        "bbox-far-outside",
        "coco",
        _annotations(TRAIN_JSON, _first_ann("bbox", [20, 10, 3000, 20])),
        "outside",
        {},
    ),
    # 7. no usable box in a split
    ("val-all-degenerate", "coco", _annotations(VAL_JSON, _all_boxes(_degenerate)), "no usable box", {}),
    ("val-all-crowd", "coco", _annotations(VAL_JSON, _all_boxes(_crowd)), "no usable box", {}),
    ("train-all-degenerate", "coco", _annotations(TRAIN_JSON, _all_boxes(_degenerate)), "no usable box", {}),
    # 8. shape rows and labels
    (
        "ragged-rows-divisible-by-4",
        "partseg",
        _shape("0 0 0 22\n1 1 1\n2 2 2 2 22\n"),
        "line 2 has 3 columns",
        {},
    ),
    (
        "ragged-rows-divisible-by-7",
        "partseg",
        _shape("0 0 0 1 0 0 22\n0 0 0 1 0 0\n0 0 0 1 0 0 22 22\n"),
        "line 2 has 6",
        {},
    ),
    ("label-1e30", "partseg", _shape("0 0 0 22\n1 1 1 1e30\n"), "part label 1e30 is outside", {}),
    ("label-past-int64", "partseg", _shape("0 0 0 22\n1 1 1 -9.3e18\n"), "part label -9.3e18 is outside", {}),
    ("label-not-whole", "partseg", _shape("0 0 0 22.5\n"), "part label 22.5 (line 1)", {}),
    ("coordinate-1e39", "partseg", _shape("0 0 0 22\n1e39 1 1 23\n"), "coordinate 1e39", {}),
    # numbers are decimal forms only: float() would read "2_2" as 22 and "0_1" as 1.0
    ("label-with-underscore", "partseg", _shape("0 0 0 22\n1 1 1 2_2\n"), "('2_2', line 2)", {}),
    ("coordinate-with-underscore", "partseg", _shape("0_1 0 0 22\n"), "('0_1', line 1)", {}),
    ("label-fullwidth-digits", "partseg", _shape("0 0 0 \uff12\uff12\n"), "line 1)", {}),
    ("exponent-forms-are-fine", "partseg", _shape("0 0 0 2.2e1\n1E-3 .5 -1. +22\n"), None, {}),
    ("partseg-fine", "partseg", lambda root: "", None, {}),
]


def _build(kind: str, tmp_path: Path) -> Path:
    if kind == "fmnist":
        return write_fmnist(tmp_path / "fmnist")
    if kind == "coco":
        return write_tiny_coco(tmp_path / "coco")
    return write_handmade(tmp_path / "shapenet")


def _load(kind: str, root: Path, kwargs: dict[str, Any]) -> object:
    if kind == "fmnist":
        fm.clear_cache()
        return len(fm.load_fashion_mnist(root, verify=False, **kwargs)[0])
    if kind == "coco":
        return len(load_coco_detection(root, image_size=32, **kwargs).train)
    return len(load_split(root, "train", points=8, normals=False, **kwargs))


@pytest.mark.parametrize(("case", "kind", "damage", "fragment", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_naming_the_file(
    tmp_path: Path, case: str, kind: str, damage: Damage, fragment: str | None, kwargs: dict[str, Any]
) -> None:
    root = _build(kind, tmp_path)
    named = damage(root)
    outcome = guarded(lambda: _load(kind, root, kwargs))
    if fragment is None:
        assert outcome.startswith("ok"), outcome
        return
    assert outcome.startswith("error: ") and "internal error" not in outcome, outcome
    assert "\n" not in outcome and named in outcome and fragment in outcome, outcome


# ----------------------------------------------------------------------------- through the CLI
CLI_CASES: list[tuple[str, str, Damage, list[str], str]] = [
    (
        "fmnist-gzip-members",
        "fmnist",
        fm_extra_members,
        ["fmnist/dense", "--set", "data.args.verify=false"],
        "gzip",
    ),
    (
        "fmnist-header-past-item-cap",
        "fmnist",
        fm_items_past_cap,
        ["fmnist/dense", "--set", "data.args.verify=false"],
        "more than the 600,000",
    ),
    (
        "coco-string-id",
        "coco",
        _annotations(TRAIN_JSON, _first_ann("image_id", "abc")),
        ["detection/dense", "--set", "data.name=coco"],
        "'image_id' is 'abc'",
    ),
    (
        "partseg-fifo",
        "partseg",
        ps_fifo_shape,
        ["partseg/dense", "--set", "data.args.normals=false"],
        "a FIFO",
    ),
]


@pytest.mark.parametrize(
    ("case", "kind", "damage", "argv", "fragment"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_bad_data_through_the_cli(
    tmp_path: Path, case: str, kind: str, damage: Damage, argv: list[str], fragment: str
) -> None:
    root = _build(kind, tmp_path)
    named = damage(root)
    where = ["--set", f"data.data_dir={root}"] if kind == "fmnist" else ["--set", f"data.root={root}"]
    args = ["train", *argv, *where, "--smoke", "--no-progress", "--out", str(tmp_path / "run")]

    def run() -> str:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        return f"{code}|{stderr.getvalue().strip()}"

    outcome = guarded(run)
    assert outcome.startswith("ok "), outcome
    code, _, err = outcome[3:].partition("|")
    lines = err.splitlines()
    assert code == "2" and len(lines) == 1, outcome
    assert lines[0].startswith("error: ") and named in lines[0] and fragment in lines[0], lines


# ----------------------------------------------------------------------------- smaller units
def test_degenerate_train_boxes_are_dropped_with_a_count(tmp_path: Path) -> None:
    root = write_tiny_coco(tmp_path / "coco")
    _edit(root / TRAIN_JSON, _first_ann("bbox", [20, 10, 0, 20]))
    with pytest.warns(UserWarning, match=r"instances_train2017.json: 1 of 7 boxes have zero width or height"):
        data = load_coco_detection(root, image_size=32)
    assert (data.train.targets[0, :, 0] >= 0).sum() == 1  # the other box of image 101 is kept
    assert all(a["id"] != 1 for a in data.train.coco["annotations"])


def test_json_depth_skips_strings_and_escapes() -> None:
    from growprune.bounded import json_depth

    assert json_depth(b'{"a": [1, [2, {"b": "]]]]\\"[[[["}]]}') == 4
    assert json_depth(b'"[[[[" ') == 0
    assert json_depth(_nested(100_000).encode()) == 100_000


def test_parse_idx_dims_past_int64_are_a_format_error() -> None:
    from growprune.tasks.classification.idx import IDXFormatError, parse_idx

    for dims in ([65536] * 4, [2**32 - 1] * 3):
        header = bytes([0, 0, 0x08, len(dims)]) + np.asarray(dims, ">u4").tobytes()
        with pytest.raises(
            IDXFormatError,
            match=r"<bytes>: IDX payload truncated: 0 bytes .* expected 18,446"
            if dims[0] == 65536
            else r"IDX payload truncated: 0 bytes",
        ):
            parse_idx(header)


def test_idx_payload_lands_in_one_buffer(tmp_path: Path) -> None:
    """Multi-byte big-endian payloads come back native, writable and equal (swapped in place)."""
    from growprune.tasks.classification.idx import read_idx

    array = np.arange(-600, 600, dtype=np.int32).reshape(3, 400)
    write_idx(tmp_path / "a.gz", array)
    back = read_idx(tmp_path / "a.gz")
    assert back.dtype == np.dtype("=i4") and back.flags.writeable and np.array_equal(back, array)
