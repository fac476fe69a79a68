"""COCO-format detection data: an ``instances_*.json`` annotation file and a folder of images.

This is the format users have (COCO-2017 itself, and most detection sets exported by labelling
tools), so it is the one code path: the generated shapes set (:mod:`growprune.tasks.detection.shapes`) is
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

What is read is bounded and checked before it is used (see :mod:`growprune.bounded`): the
annotation files are regular files of at most :data:`MAX_ANNOTATION_BYTES`, nested at most
:data:`~growprune.bounded.MAX_JSON_DEPTH` deep, and every field training and COCOeval rely
on has its type checked (ids are integers, a bbox is 4 finite numbers lying in its image, with
:data:`BOX_TOLERANCE` of slack). An image is a regular file of at most :data:`MAX_IMAGE_BYTES`
whose header must show the width and height its annotation states (the boxes are in those
pixels) and at most ``max_image_pixels`` pixels, checked before a pixel is decoded.
Degenerate boxes (zero width or height) cannot be learnt or matched: they are left out of the
training targets and of the ground truth that is scored, with a warning counting them, and a
split left without a single usable box is refused (its mAP would be 0 whatever the model does).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growprune.bounded import open_regular, read_json
from growprune.errors import GrowpruneError, UsageError

__all__ = [
    "BOX_TOLERANCE",
    "MAX_ANNOTATION_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ROOT_ENV_VAR",
    "CocoDetectionData",
    "CocoFormatError",
    "DetectionSplit",
    "load_coco_detection",
    "read_annotations",
]

ROOT_ENV_VAR = "GROWPRUNE_COCO"
PAD_LABEL = -1  # label of the padding rows of a target tensor
# COCO-2017's train annotations are 0.45 GB; parsed JSON takes several times its size in memory,
# so the cap is about twice the largest real file, not what would fit.
MAX_ANNOTATION_BYTES = 1 << 30
MAX_IMAGE_BYTES = 256 << 20
# The default cap on an image's width x height, read from its header before decoding: 8192 x 8192,
# 200 MB as RGB. COCO photos are about 0.3 megapixels; the model sees image_size x image_size.
# Pillow's own bound (Image.MAX_IMAGE_PIXELS, 89.5 M) applies above this one as well.
MAX_IMAGE_PIXELS = 8192 * 8192
# How far a box may reach outside its image, as a fraction of the image's side (plus one pixel):
# exporters round and labellers overshoot a little; anything further is a wrong number.
BOX_TOLERANCE = 0.1


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


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Ids are stored and compared as 64-bit integers downstream (tensors, pycocotools' arrays), and
# an image side beyond 2**31 - 1 pixels is no image format's: JSON itself has no bound (10**400
# is a valid JSON integer), so these are checked before any arithmetic.
MAX_ID = 2**63 - 1
MAX_SIDE = 2**31 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return _is_int(value) and -MAX_ID <= value <= MAX_ID


def _is_number(value: Any) -> bool:
    """A finite JSON number that converts to a float (an integer of 400 digits does not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_entries(path: Path, data: dict[str, Any]) -> None:
    """Every field training and COCOeval read, with the type they need (one line naming the entry)."""

    def bad(section: str, index: int, entry: Any, key: str, expected: str) -> CocoFormatError:
        ident = f" (id {_show(entry.get('id'))})" if isinstance(entry, dict) and key != "id" else ""
        value = f"is {_show(entry[key])}" if isinstance(entry, dict) and key in entry else "is missing"
        where = f"{section}[{index}]{ident}"
        return _fail(
            path, f"an entry lacks or has a malformed field: {where}: '{key}' {value}; expected {expected}"
        )

    def need(section: str, index: int, entry: Any, key: str, ok: Any, expected: str) -> None:
        if not isinstance(entry, dict):
            raise _fail(path, f"{section}[{index}] is {_show(entry)}; expected an object")
        if key not in entry or not ok(entry[key]):
            raise bad(section, index, entry, key, expected)

    for k, image in enumerate(data["images"]):
        need("images", k, image, "id", _is_id, "an integer id (64-bit)")
        need(
            "images",
            k,
            image,
            "file_name",
            lambda v: isinstance(v, str) and v and "\0" not in v,
            "a file name",
        )
        for key in ("width", "height"):
            need(
                "images",
                k,
                image,
                key,
                lambda v: _is_int(v) and 0 < v <= MAX_SIDE,
                f"a positive integer (pixels), at most {MAX_SIDE:,}",
            )
    for k, category in enumerate(data["categories"]):
        need("categories", k, category, "id", _is_id, "an integer id (64-bit)")
        need("categories", k, category, "name", lambda v: isinstance(v, str), "a name (a string)")
    for k, ann in enumerate(data["annotations"]):
        need("annotations", k, ann, "id", _is_id, "an integer id (64-bit)")
        need("annotations", k, ann, "image_id", _is_id, "the integer id of an image")
        need("annotations", k, ann, "category_id", _is_id, "the integer id of a category")
        need(
            "annotations",
            k,
            ann,
            "bbox",
            lambda v: isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v),
            "[x, y, width, height]: 4 finite numbers (pixels) within a float's range",
        )
        if "iscrowd" in ann:
            need("annotations", k, ann, "iscrowd", lambda v: v in (0, 1), "0 or 1")
        if "area" in ann:
            need("annotations", k, ann, "area", lambda v: _is_number(v) and v >= 0, "a number >= 0")


def _check_boxes(path: Path, data: dict[str, Any], images: dict[int, dict[str, Any]]) -> None:
    """Every box lies in its image, within :data:`BOX_TOLERANCE` (a box far outside is a wrong
    number, e.g. 1e39 or a swapped field, which otherwise surfaces later as a diverging loss)."""
    for ann in data["annotations"]:
        image = images[ann["image_id"]]
        width, height = image["width"], image["height"]
        x, y, w, h = (float(v) for v in ann["bbox"])
        slack_x, slack_y = BOX_TOLERANCE * width + 1, BOX_TOLERANCE * height + 1
        inside = (
            -slack_x <= x <= width + slack_x
            and -slack_y <= y <= height + slack_y
            and -slack_x <= x + w <= width + slack_x
            and -slack_y <= y + h <= height + slack_y
        )
        if not inside:
            raise _fail(
                path,
                f"annotation {ann['id']}: bbox {_show(ann['bbox'])} lies outside its image {image['id']} "
                f"({width}x{height} pixels); expected [x, y, width, height] in that image's pixels: "
                "correct or delete the annotation",
            )


def read_annotations(path: Path) -> dict[str, Any]:
    """The annotation JSON, checked for what training and COCOeval rely on (one-line errors)."""
    expected = "a COCO instances JSON (images, annotations, categories)"
    data = read_json(
        path,
        max_bytes=MAX_ANNOTATION_BYTES,
        fail=_fail,
        expected=expected,
        missing=f"no such file; expected {expected}",
        invalid="not readable as JSON",
    )
    if not isinstance(data, dict):
        raise _fail(path, f"the top level is not an object; expected {expected}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"no '{key}' list; expected {expected}")
    _check_entries(path, data)
    if not data["categories"]:
        raise _fail(path, "the 'categories' list is empty; expected at least one category")
    # Ids are keys: pycocotools indexes each list by id, so a repeated one silently replaces an
    # entry (a lost box makes the mAP wrong with no error).
    known: set[int] = set()
    for category in data["categories"]:
        if category["id"] in known:
            raise _fail(
                path, f"category id {category['id']} is listed twice in 'categories'; ids must be unique"
            )
        known.add(category["id"])
    images: dict[int, dict[str, Any]] = {}
    for image in data["images"]:
        if image["id"] in images:
            raise _fail(path, f"image id {image['id']} is listed twice in 'images'; ids must be unique")
        images[image["id"]] = image
    seen: set[int] = set()
    for ann in data["annotations"]:
        if ann["id"] in seen:
            raise _fail(
                path,
                f"annotation id {ann['id']} is listed twice in 'annotations'; ids must be unique "
                "(pycocotools keeps only one of them, so a box would be lost from scoring)",
            )
        seen.add(ann["id"])
    for ann in data["annotations"]:
        if ann["category_id"] not in known:
            raise _fail(
                path, f"annotation {ann['id']} has category_id {ann['category_id']}, not in categories"
            )
        if ann["image_id"] not in images:
            raise _fail(path, f"annotation {ann['id']} names image_id {ann['image_id']}, not in images")
    _check_boxes(path, data, images)
    return data


def _read_image(
    path: Path, size: int, expected: tuple[int, int], annotation_file: Path, max_pixels: int
) -> np.ndarray:
    """The image resized to ``size`` x ``size`` RGB, after its header showed the ``expected``
    (width, height) and at most ``max_pixels`` pixels: nothing is decoded before that."""
    from PIL import Image

    file = open_regular(
        path,
        max_bytes=MAX_IMAGE_BYTES,
        fail=_fail,
        missing="no such image; expected the file the annotation JSON names",
        what="an image",
    )
    with file:
        try:
            with warnings.catch_warnings():
                # Pillow warns from the header alone; the check below says more (and is stricter by default).
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(file)
            with image, warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                width, height = image.size
                if width * height > max_pixels:
                    raise _fail(
                        path,
                        f"is {width}x{height} = {width * height:,} pixels by its header, more than the "
                        f"{max_pixels:,} allowed (data.args.max_image_pixels); downscale it (and its boxes)",
                    )
                if (width, height) != expected:
                    raise _fail(
                        path,
                        f"is {width}x{height} pixels, but {annotation_file} gives it width {expected[0]} and "
                        f"height {expected[1]}; the boxes are in those pixels: fix the entry (or the image)",
                    )
                rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
        except GrowpruneError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            raise _fail(
                path,
                f"refused as a decompression bomb by Pillow ({err}); at most {max_pixels:,} pixels are "
                "allowed (data.args.max_image_pixels): downscale it (and its boxes)",
            ) from None
        except Exception as err:  # Pillow's decoders raise many types on malformed bytes
            raise _fail(
                path, f"not a readable image ({type(err).__name__}: {err}); expected JPEG or PNG"
            ) from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _load_split(
    data: dict[str, Any],
    annotation_file: Path,
    image_dir: Path,
    size: int,
    label_of: dict[int, int],
    limit: int | None,
    max_pixels: int,
) -> DetectionSplit:
    """One split in memory; degenerate boxes are dropped (warned, with their count) from the
    training targets and from the scored ground truth, and a split with no usable box is refused."""
    if not image_dir.is_dir():
        raise _fail(image_dir, f"no such folder; expected the images of {annotation_file.name}")
    images = sorted(data["images"], key=lambda i: int(i["id"]))[:limit]
    if not images:
        raise _fail(annotation_file, "the 'images' list is empty; expected at least one image")
    keep = {int(i["id"]) for i in images}
    by_image: dict[int, list[list[float]]] = {i: [] for i in keep}
    annotations, degenerate, crowd = [], [], 0
    for ann in data["annotations"]:
        image_id = int(ann["image_id"])
        if image_id not in keep:
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            degenerate.append(ann["id"])
            continue
        annotations.append(ann)
        if int(ann.get("iscrowd", 0)):
            crowd += 1
            continue
        by_image[image_id].append([float(label_of[int(ann["category_id"])]), x, y, x + w, y + h])
    usable = len(annotations) - crowd
    if usable == 0:
        what = f"the first {len(images)} images" if limit is not None else f"its {len(images)} images"
        raise _fail(
            annotation_file,
            f"{what} have no usable box ({len(degenerate)} with zero width or height, {crowd} crowd "
            "regions): nothing to learn or score, the mAP would be 0 whatever the model does; "
            "fix the boxes, or name another annotation file",
        )
    if degenerate:
        shown = ", ".join(str(i) for i in degenerate[:5]) + (", ..." if len(degenerate) > 5 else "")
        warnings.warn(
            f"{annotation_file}: {len(degenerate)} of {len(degenerate) + len(annotations)} boxes have "
            f"zero width or height (annotation ids {shown}); they are left out of training and scoring",
            stacklevel=3,
        )
    most = max((len(v) for v in by_image.values()), default=0)
    targets = torch.full((len(images), max(most, 1), 5), float(PAD_LABEL))
    pixels = np.empty((len(images), 3, size, size), dtype=np.uint8)
    sizes: list[tuple[int, int]] = []
    for row, image in enumerate(images):
        width, height = int(image["width"]), int(image["height"])
        sizes.append((width, height))
        pixels[row] = _read_image(
            image_dir / str(image["file_name"]), size, (width, height), annotation_file, max_pixels
        )
        objects = by_image[int(image["id"])]
        if objects:
            boxes = torch.tensor(objects)
            boxes[:, 1:] /= torch.tensor([width, height, width, height], dtype=torch.float32)
            boxes[:, 1:] = boxes[:, 1:].clamp(0.0, 1.0)
            targets[row, : len(objects)] = boxes
    subset = {**data, "images": images, "annotations": annotations}
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
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> CocoDetectionData:
    """Both splits of the COCO-format dataset under ``root`` (names relative to it).

    Labels follow the training file's categories sorted by id; the validation file must use the
    same category ids. ``train_limit`` / ``val_limit`` keep the first images by id (smoke runs).
    ``max_image_pixels`` bounds each image's width x height, checked from its header before it is
    decoded (see :data:`MAX_IMAGE_PIXELS`).

    Raises:
        CocoFormatError: a missing or malformed file or folder (the message names it).
    """
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if not _is_int(max_image_pixels) or max_image_pixels < 1:
        raise ValueError(f"max_image_pixels must be a positive integer, got {max_image_pixels!r}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise _fail(base, "no such folder; expected a COCO-format dataset (annotations/ and image folders)")
    train_file = base / train_annotations
    train_data = read_annotations(train_file)
    categories = sorted(train_data["categories"], key=lambda c: int(c["id"]))
    category_ids = [int(c["id"]) for c in categories]
    label_of = {cid: k for k, cid in enumerate(category_ids)}
    train = _load_split(
        train_data, train_file, base / train_images, image_size, label_of, train_limit, max_image_pixels
    )
    val_file = base / val_annotations
    val_data = read_annotations(val_file)
    val_categories = {int(c["id"]) for c in val_data["categories"]}
    if val_categories - set(category_ids):
        raise _fail(
            val_file, f"categories {sorted(val_categories - set(category_ids))} are not in {train_file}"
        )
    val = _load_split(
        val_data, val_file, base / val_images, image_size, label_of, val_limit, max_image_pixels
    )
    return CocoDetectionData(
        train=train,
        val=val,
        category_ids=category_ids,
        category_names=[str(c["name"]) for c in categories],
        root=base,
    )
