"""The detection task's ``evaluation:`` keys: how a detector's boxes are post-processed and shown.

A plain dataclass with bounds in field metadata (as a method's settings), imported without torch
or pycocotools so a recipe is validated before the task's extras are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class DetectionEvaluation:
    score_threshold: float = field(
        default=0.01, metadata={"ge": 0, "lt": 1, "description": "lowest class score kept"}
    )
    nms_iou: float = field(
        default=0.45, metadata={"gt": 0, "le": 1, "description": "IoU above which NMS suppresses a box"}
    )
    max_detections: int = field(
        default=100, metadata={"ge": 1, "description": "boxes kept per image (COCO scores 100)"}
    )
    examples: int = field(
        default=5, metadata={"ge": 0, "description": "detection images shown in the report"}
    )
