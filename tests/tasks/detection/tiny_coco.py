"""A COCO-format folder written by hand, not by growprune's generator: other category ids and
names, non-default file and folder names possible, a crowd box, JPEG and PNG images of odd sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 42, "name": "dog"}, {"id": 11, "name": "cat"}]  # unsorted on purpose


def _image(path: Path, width: int, height: int, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[10:30, 20:50] = (255, 0, 0)
    Image.fromarray(pixels).save(path)


def write_tiny_coco(
    root: Path, train_file: str = "instances_train2017.json", train_dir: str = "train2017"
) -> Path:
    """Write the folder under ``root``: 3 train images (one with a crowd box), 2 val images."""
    (root / "annotations").mkdir(parents=True)
    splits = {
        (train_file, train_dir): [(101, "a.png", 80, 60), (102, "b.jpg", 100, 50), (103, "c.png", 64, 64)],
        ("instances_val2017.json", "val2017"): [(201, "d.png", 90, 70), (202, "e.jpg", 70, 90)],
    }
    ann_id = 1
    for (file_name, folder), images in splits.items():
        (root / folder).mkdir()
        annotations = []
        for k, (image_id, name, w, h) in enumerate(images):
            _image(root / folder / name, w, h, image_id)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 11,
                    "bbox": [20, 10, 30, 20],
                    "area": 600,
                    "iscrowd": 0,
                }
            )
            annotations.append(
                {
                    "id": ann_id + 1,
                    "image_id": image_id,
                    "category_id": 42,
                    "bbox": [w / 2, h / 2, w / 4, h / 4],
                    "area": w * h / 16,
                    "iscrowd": 0,
                }
            )
            ann_id += 2
            if k == 0:
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": 42,
                        "bbox": [0, 0, 10, 10],
                        "area": 100,
                        "iscrowd": 1,
                    }
                )
                ann_id += 1
        document = {
            "images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
            "annotations": annotations,
            "categories": CATEGORIES,
        }
        (root / "annotations" / file_name).write_text(json.dumps(document))
    return root
