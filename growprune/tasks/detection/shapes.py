"""A generated detection dataset written in exactly COCO's format (COCO cannot be downloaded here).

Each image holds 1-6 objects of five categories (circle, square, triangle, cross, ring) of
varied size (small, medium and large in COCO's sense), colour and texture (solid, stripes,
checks, noise) on a cluttered background (a colour gradient, stray lines and blobs). Later
objects may cover earlier ones: every box is the extent of the part still *visible*, as COCO's
boxes are, and an object less than a third visible is dropped. Images are PNGs of varied size,
so the loader's resizing and box rescaling are exercised as with real photos.

:func:`generated_root` writes the set once into ``<cache>/detection/shapes-<key>/`` (the cache
as :func:`growprune.data.cache.cache_root` chooses it) in the COCO-2017 layout, then
:func:`growprune.tasks.detection.coco.load_coco_detection` reads it like any other COCO-format folder. The
key covers the arguments and :data:`GENERATOR_VERSION`, so a changed generator writes anew.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from growprune.data.cache import cache_root

__all__ = ["CATEGORIES", "GENERATOR_VERSION", "generate_shapes", "generated_root"]

GENERATOR_VERSION = 1
CATEGORIES = ("circle", "square", "triangle", "cross", "ring")
# Category ids as a COCO file has them: not 0-based and not contiguous, so nothing may assume either.
CATEGORY_IDS = (1, 2, 3, 5, 7)
MIN_VISIBLE = 1 / 3
SPLITS = {"train": "train2017", "val": "val2017"}


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) float fill: solid, stripes, checks or noise around a random colour."""
    base = rng.uniform(0.1, 1.0, size=3)
    kind = rng.integers(4)
    if kind == 0:
        return np.broadcast_to(base, (h, w, 3)).copy()
    other = rng.uniform(0.0, 1.0, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 1:
        period = rng.integers(3, 9)
        angle = rng.uniform(0, math.pi)
        on = ((xx * math.cos(angle) + yy * math.sin(angle)) // period) % 2 == 0
    elif kind == 2:
        cell = rng.integers(3, 9)
        on = ((xx // cell) + (yy // cell)) % 2 == 0
    else:
        return np.clip(base + rng.normal(0, 0.15, size=(h, w, 3)), 0, 1)
    return np.where(on[..., None], base, other)


def _shape_mask(rng: np.random.Generator, category: str, size: int) -> np.ndarray:
    """A boolean (size, size) mask of one object, filling most of its square."""
    from PIL import Image, ImageDraw

    scale = 4  # draw large, shrink: smooth edges without anti-aliasing support in ImageDraw
    s = size * scale
    image = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(image)
    m = 0.04 * s
    if category == "circle":
        draw.ellipse([m, m, s - m, s - m], fill=255)
    elif category == "square":
        draw.rectangle([m, m, s - m, s - m], fill=255)
    elif category == "triangle":
        draw.polygon([(s / 2, m), (s - m, s - m), (m, s - m)], fill=255)
    elif category == "cross":
        t = s * rng.uniform(0.14, 0.2)
        draw.rectangle([s / 2 - t, m, s / 2 + t, s - m], fill=255)
        draw.rectangle([m, s / 2 - t, s - m, s / 2 + t], fill=255)
    else:  # ring
        t = s * rng.uniform(0.12, 0.2)
        draw.ellipse([m, m, s - m, s - m], fill=255)
        draw.ellipse([m + t, m + t, s - m - t, s - m - t], fill=0)
    return np.asarray(image.resize((size, size), Image.BILINEAR)) > 127


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A colour gradient with clutter: thin lines and small blobs that are no category."""
    from PIL import Image, ImageDraw

    a, b = rng.uniform(0, 1, size=3), rng.uniform(0, 1, size=3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    canvas = Image.fromarray((255 * (a + (b - a) * t) * np.ones((h, w, 1))).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 10)):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x0, y0, x1, y1 = rng.integers(0, w), rng.integers(0, h), rng.integers(0, w), rng.integers(0, h)
        if rng.random() < 0.6:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 3)))
        else:
            r = int(rng.integers(1, 4))
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    return np.asarray(canvas, dtype=np.float64) / 255.0


def _image(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, list[int], int]]]:
    """One image (h, w, 3 uint8) and its objects: (category index, [x, y, w, h], visible area)."""
    h, w = int(rng.integers(120, 200)), int(rng.integers(120, 200))
    canvas = _background(rng, h, w)
    placed: list[tuple[int, np.ndarray, int]] = []  # category, visible part, full area
    for _ in range(int(rng.integers(1, 7))):
        category = int(rng.integers(len(CATEGORIES)))
        size = int(np.exp(rng.uniform(math.log(14), math.log(0.6 * min(h, w)))))
        x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        local = _shape_mask(rng, CATEGORIES[category], size)
        mask = np.zeros((h, w), dtype=bool)
        mask[y : y + size, x : x + size] = local
        canvas[mask] = _texture(rng, size, size)[local]
        for i, (other, visible, full) in enumerate(placed):
            placed[i] = (other, visible & ~mask, full)
        placed.append((category, mask, int(mask.sum())))
    objects = []
    for category, visible, full in placed:
        area = int(visible.sum())
        if area == 0 or area < MIN_VISIBLE * full:
            continue
        rows, cols = np.nonzero(visible)
        x0, x1, y0, y1 = int(cols.min()), int(cols.max()) + 1, int(rows.min()), int(rows.max()) + 1
        objects.append((category, [x0, y0, x1 - x0, y1 - y0], area))
    return (canvas * 255).round().astype(np.uint8), objects


def generate_shapes(out: Path, n_train: int = 1500, n_val: int = 250, seed: int = 0) -> Path:
    """Write the dataset under ``out`` in the COCO-2017 layout; returns ``out``."""
    from PIL import Image

    categories = [
        {"id": cid, "name": name, "supercategory": "shape"} for cid, name in zip(CATEGORY_IDS, CATEGORIES)
    ]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    next_ann = 1
    for split, count, offset in (("train", n_train, 0), ("val", n_val, 1)):
        folder = out / SPLITS[split]
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng([seed, offset, GENERATOR_VERSION])
        images, annotations = [], []
        for index in range(count):
            image_id = 1 + index + offset * 1_000_000
            pixels, objects = _image(rng)
            name = f"{image_id:012d}.png"
            Image.fromarray(pixels).save(folder / name, compress_level=1)
            images.append(
                {"id": image_id, "file_name": name, "height": pixels.shape[0], "width": pixels.shape[1]}
            )
            for category, bbox, area in objects:
                annotations.append(
                    {
                        "id": next_ann,
                        "image_id": image_id,
                        "category_id": CATEGORY_IDS[category],
                        "bbox": [float(v) for v in bbox],
                        "area": float(area),
                        "iscrowd": 0,
                    }
                )
                next_ann += 1
        info = {"description": "growprune generated shapes", "version": str(GENERATOR_VERSION), "seed": seed}
        document = {"info": info, "images": images, "annotations": annotations, "categories": categories}
        (out / "annotations" / f"instances_{SPLITS[split]}.json").write_text(json.dumps(document))
    return out


def generated_root(
    n_train: int = 1500,
    n_val: int = 250,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The cached generated dataset's folder, written first if absent (atomically: concurrent
    runs each write a temporary copy and the first to finish is kept)."""
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be >= 1, got {n_train} and {n_val}")
    key = hashlib.sha256(json.dumps([GENERATOR_VERSION, n_train, n_val, seed]).encode()).hexdigest()[:12]
    base = cache_root(cache_dir) / "detection"
    final = base / f"shapes-{key}"
    if (final / "annotations" / "instances_val2017.json").is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".shapes-", dir=base))
    try:
        generate_shapes(work, n_train, n_val, seed)
        try:
            work.rename(final)
        except OSError:  # another process finished first; its copy is identical
            if not (final / "annotations" / "instances_val2017.json").is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final
