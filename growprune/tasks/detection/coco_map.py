"""COCO box mAP by the reference implementation (pycocotools' COCOeval), kept off stdout.

pycocotools prints progress and its 12-line summary with ``print``; the CLI's stdout carries
only results, so everything it prints is captured here. The ground truth is the annotation JSON
as a dict (no second file read); ``area`` and ``iscrowd``, which COCOeval needs but some
exporters leave out, are filled in as ``w * h`` and 0.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

__all__ = ["coco_map"]


def _ground_truth(dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    gt = copy.deepcopy(dataset)
    for ann in gt["annotations"]:
        x, y, w, h = (float(v) for v in ann["bbox"])
        ann["bbox"] = [x, y, w, h]
        ann.setdefault("area", w * h)
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    return coco


def coco_map(dataset: dict[str, Any], detections: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``map`` (AP@[.5:.95]), ``map50`` and ``map75`` of ``detections`` against ``dataset``.

    Args:
        dataset: a COCO instances document (images, annotations, categories).
        detections: COCO result entries ``{"image_id", "category_id", "bbox": [x, y, w, h],
            "score"}`` in the pixels of the original images.

    A set without detections scores 0 (COCOeval refuses an empty result list), as does a set
    without ground-truth objects (where COCOeval reports -1, "undefined").
    """
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _ground_truth(dataset)
        results = gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(gt, results, iouType="bbox")
        evaluator.params.imgIds = sorted(int(i["id"]) for i in dataset["images"])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(float(v), 0.0) for v in evaluator.stats[:3]]
    return {"map": stats[0], "map50": stats[1], "map75": stats[2]}
