"""COCO mAP through pycocotools: perfect predictions score 1, shifted ones what IoU says."""

from __future__ import annotations

from typing import Any

import pytest

from growprune.tasks.detection.coco_map import coco_map


def dataset() -> dict[str, Any]:
    boxes = {1: [[10, 10, 40, 20], [60, 50, 30, 30]], 2: [[5, 5, 50, 50]]}
    annotations = []
    for image_id, items in boxes.items():
        for box in items:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 7,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 80, "height": 60}],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "thing"}],
    }


def as_detections(data: dict[str, Any], shift: float = 0.0) -> list[dict[str, Any]]:
    out = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        out.append(
            {"image_id": ann["image_id"], "category_id": 7, "bbox": [x + shift * w, y, w, h], "score": 0.9}
        )
    return out


def test_perfect_predictions_score_one(capsys: pytest.CaptureFixture[str]) -> None:
    data = dataset()
    assert coco_map(data, as_detections(data)) == {"map": 1.0, "map50": 1.0, "map75": 1.0}
    assert capsys.readouterr().out == ""  # pycocotools' printing is kept off stdout


def test_shifted_predictions_score_by_their_iou() -> None:
    data = dataset()
    # shifted by 0.3 of their width: IoU 0.7 / 1.3 = 0.54 -> a hit at threshold 0.5 only, of ten
    scores = coco_map(data, as_detections(data, shift=0.3))
    assert scores["map50"] == pytest.approx(1.0)
    assert scores["map75"] == pytest.approx(0.0)
    assert scores["map"] == pytest.approx(0.1)
    # shifted by 0.1: IoU 0.9 / 1.1 = 0.82 -> hits at 0.5 ... 0.8, seven of ten thresholds
    assert coco_map(data, as_detections(data, shift=0.1))["map"] == pytest.approx(0.7)


def test_a_detection_on_a_crowd_region_is_not_a_false_positive() -> None:
    data = dataset()
    detections = as_detections(data)
    data["annotations"].append(
        {"id": 99, "image_id": 2, "category_id": 7, "bbox": [60, 30, 20, 20], "area": 400, "iscrowd": 1}
    )
    crowd_hit = {"image_id": 2, "category_id": 7, "bbox": [60, 30, 20, 20], "score": 0.95}
    assert coco_map(data, [crowd_hit, *detections])["map"] == pytest.approx(1.0)


def test_no_detections_score_zero_and_missing_area_is_filled() -> None:
    data = dataset()
    assert coco_map(data, []) == {"map": 0.0, "map50": 0.0, "map75": 0.0}
    for ann in data["annotations"]:
        del ann["area"], ann["iscrowd"]
    assert coco_map(data, as_detections(data))["map"] == pytest.approx(1.0)
