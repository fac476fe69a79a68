"""COCO-format detection data: an ``instances_*.json`` annotation file and a folder of images.

This is the format users have (COCO-2017 itself, and most detection sets exported by labelling
tools), so it is the one code path: the generated shapes set (:mod:`growprune.data.shapes`) is
written in it and read through :func:`load_coco_detection` like a real download.

Layout under ``root`` (the COCO-2017 defaults; every name can be changed by an argument)::

    annotations/instances_train2017.json   annotations/instances_val2017.json
    train2017/*.jpg                        val2017/*.jpg

Images are decoded with Pillow, converted to RGB, resized (warped, as SSD does) to a square
``image_size`` and kept in memory as uint8. Boxes become ``[x1, y1, x2, y2]`` in units of the
image width and height, so resizing needs no further rescaling and a flip is ``1 - x``. Crowd
boxes (``iscrowd: 1``) and degenerate boxes are left out of the training targets, as COCO's own
training does; evaluation scores against the annotation file itself (pycocotools ignores crowd
regions there), with predictions mapped back to each image's original pixel size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growprune.errors import UsageError

__all__ = [
    "ROOT_ENV_VAR",
    "CocoDetectionData",
    "CocoFormatError",
    "DetectionSplit",
    "load_coco_detection",
    "read_annotations",
]

ROOT_ENV_VAR = "GROWPRUNE_COCO"
PAD_LABEL = -1  # label of the padding rows of a target tensor


class CocoFormatError(UsageError, ValueError):
    """A detection annotation file or image folder is missing or not in COCO format."""


@dataclass
class DetectionSplit:
    """One split in memory.

    Attributes:
        images: (N, 3, S, S) uint8, resized to the model's input size.
        targets: (N, M, 5) float: ``[label, x1, y1, x2, y2]`` per object (coordinates as fractions
            of the image size; labels are contiguous indices 0..C-1), rows with label -1 pad.
        image_ids: the COCO ``id`` of each image (what predictions are reported against).
        sizes: (width, height) of each original image, to map boxes back to pixels.
        annotation_file: the JSON the split was read from.
        coco: the parsed annotation JSON restricted to these images (the ground truth of COCOeval).
    """

    images: torch.Tensor
    targets: torch.Tensor
    image_ids: list[int]
    sizes: list[tuple[int, int]]
    annotation_file: Path
    coco: dict[str, Any] = field(repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> DetectionSplit:
        self.images, self.targets = self.images.to(device), self.targets.to(device)
        return self


@dataclass
class CocoDetectionData:
    """Both splits and the category table (``category_ids[k]`` is the COCO id of label ``k``)."""

    train: DetectionSplit
    val: DetectionSplit
    category_ids: list[int]
    category_names: list[str]
    root: Path

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)


def _fail(path: Path, why: str) -> CocoFormatError:
    return CocoFormatError(f"{path}: {why}")


def read_annotations(path: Path) -> dict[str, Any]:
    """The annotation JSON, checked for what training and COCOeval rely on (one-line errors)."""
    expected = "a COCO instances JSON (images, annotations, categories)"
    if not path.is_file():
        raise _fail(path, f"no such file; expected {expected}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"not readable as JSON ({err}); expected {expected}") from None
    if not isinstance(data, dict):
        raise _fail(path, f"the top level is not an object; expected {expected}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"no '{key}' list; expected {expected}")
    try:
        for image in data["images"]:
            int(image["id"]), str(image["file_name"]), int(image["width"]), int(image["height"])
        for category in data["categories"]:
            int(category["id"]), str(category["name"])
        for ann in data["annotations"]:
            int(ann["id"]), int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
    except (KeyError, TypeError, ValueError) as err:
        raise _fail(
            path,
            f"an entry lacks or has a malformed field ({type(err).__name__}: {err}); images need "
            "id, file_name, width, height; categories id, name; annotations id, image_id, "
            "category_id, bbox [x, y, w, h]",
        ) from None
    if not data["categories"]:
        raise _fail(path, "the 'categories' list is empty; expected at least one category")
    known = {int(c["id"]) for c in data["categories"]}
    images = {int(i["id"]) for i in data["images"]}
    for ann in data["annotations"]:
        if int(ann["category_id"]) not in known:
            raise _fail(
                path, f"annotation {ann['id']} has category_id {ann['category_id']}, not in categories"
            )
        if int(ann["image_id"]) not in images:
            raise _fail(path, f"annotation {ann['id']} names image_id {ann['image_id']}, not in images")
    return data


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    except FileNotFoundError:
        raise _fail(path, "no such image; expected the file the annotation JSON names") from None
    except (OSError, UnidentifiedImageError) as err:
        raise _fail(path, f"not a readable image ({err}); expected JPEG or PNG") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _load_split(
    data: dict[str, Any],
    annotation_file: Path,
    image_dir: Path,
    size: int,
    label_of: dict[int, int],
    limit: int | None,
) -> DetectionSplit:
    if not image_dir.is_dir():
        raise _fail(image_dir, f"no such folder; expected the images of {annotation_file.name}")
    images = sorted(data["images"], key=lambda i: int(i["id"]))[:limit]
    if not images:
        raise _fail(annotation_file, "the 'images' list is empty; expected at least one image")
    keep = {int(i["id"]) for i in images}
    by_image: dict[int, list[list[float]]] = {i: [] for i in keep}
    for ann in data["annotations"]:
        image_id = int(ann["image_id"])
        if image_id not in keep or int(ann.get("iscrowd", 0)):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w > 0 and h > 0:
            by_image[image_id].append([float(label_of[int(ann["category_id"])]), x, y, x + w, y + h])
    most = max((len(v) for v in by_image.values()), default=0)
    targets = torch.full((len(images), max(most, 1), 5), float(PAD_LABEL))
    pixels = np.empty((len(images), 3, size, size), dtype=np.uint8)
    sizes: list[tuple[int, int]] = []
    for row, image in enumerate(images):
        width, height = int(image["width"]), int(image["height"])
        if width <= 0 or height <= 0:
            raise _fail(annotation_file, f"image {image['id']} has size {width}x{height}")
        sizes.append((width, height))
        pixels[row] = _read_image(image_dir / str(image["file_name"]), size)
        objects = by_image[int(image["id"])]
        if objects:
            boxes = torch.tensor(objects)
            boxes[:, 1:] /= torch.tensor([width, height, width, height], dtype=torch.float32)
            boxes[:, 1:] = boxes[:, 1:].clamp(0.0, 1.0)
            targets[row, : len(objects)] = boxes
    subset = {
        **data,
        "images": images,
        "annotations": [a for a in data["annotations"] if int(a["image_id"]) in keep],
    }
    return DetectionSplit(
        images=torch.from_numpy(pixels),
        targets=targets,
        image_ids=[int(i["id"]) for i in images],
        sizes=sizes,
        annotation_file=annotation_file,
        coco=subset,
    )


def find_root(root: str | os.PathLike[str] | None) -> Path | None:
    """``root``, else ``$GROWPRUNE_COCO``, else None (the caller then uses the generated set)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ROOT_ENV_VAR)
    return Path(env).expanduser() if env else None


def load_coco_detection(
    root: str | os.PathLike[str],
    *,
    train_annotations: str = "annotations/instances_train2017.json",
    val_annotations: str = "annotations/instances_val2017.json",
    train_images: str = "train2017",
    val_images: str = "val2017",
    image_size: int = 128,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> CocoDetectionData:
    """Both splits of the COCO-format dataset under ``root`` (names relative to it).

    Labels follow the training file's categories sorted by id; the validation file must use the
    same category ids. ``train_limit`` / ``val_limit`` keep the first images by id (smoke runs).

    Raises:
        CocoFormatError: a missing or malformed file or folder (the message names it).
    """
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise _fail(base, "no such folder; expected a COCO-format dataset (annotations/ and image folders)")
    train_file = base / train_annotations
    train_data = read_annotations(train_file)
    categories = sorted(train_data["categories"], key=lambda c: int(c["id"]))
    category_ids = [int(c["id"]) for c in categories]
    label_of = {cid: k for k, cid in enumerate(category_ids)}
    train = _load_split(train_data, train_file, base / train_images, image_size, label_of, train_limit)
    val_file = base / val_annotations
    val_data = read_annotations(val_file)
    val_categories = {int(c["id"]) for c in val_data["categories"]}
    if val_categories - set(category_ids):
        raise _fail(
            val_file, f"categories {sorted(val_categories - set(category_ids))} are not in {train_file}"
        )
    val = _load_split(val_data, val_file, base / val_images, image_size, label_of, val_limit)
    return CocoDetectionData(
        train=train,
        val=val,
        category_ids=category_ids,
        category_names=[str(c["name"]) for c in categories],
        root=base,
    )
