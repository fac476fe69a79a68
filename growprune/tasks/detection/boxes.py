"""Box arithmetic of a single-shot detector, in plain torch.

torchvision's detection ops do not load beside the CPU torch build here, so IoU, the SSD box
encoding and non-maximum suppression are written out. Boxes are ``[x1, y1, x2, y2]`` unless a
name says ``cxcywh`` (centre, width, height), which is how default boxes are laid out.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "VARIANCES",
    "batched_nms",
    "box_iou",
    "cxcywh_to_xyxy",
    "decode",
    "detect",
    "encode",
    "nms",
    "xyxy_to_cxcywh",
]

# SSD's "variances": the regression targets are divided by them so centre offsets and log-scale
# changes have comparable magnitudes (about unit variance) for the smooth-L1 loss.
VARIANCES = (0.1, 0.2)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) intersection over union of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4); 0 for empty boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def encode(
    boxes: torch.Tensor, defaults: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> torch.Tensor:
    """Regression targets of xyxy ``boxes`` against cxcywh default boxes (same leading shape)."""
    g = xyxy_to_cxcywh(boxes)
    centre = (g[..., :2] - defaults[..., :2]) / (defaults[..., 2:] * variances[0])
    size = torch.log(g[..., 2:].clamp(min=1e-8) / defaults[..., 2:]) / variances[1]
    return torch.cat((centre, size), dim=-1)


def decode(
    deltas: torch.Tensor, defaults: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> torch.Tensor:
    """xyxy boxes from regression outputs: the inverse of :func:`encode`."""
    centre = defaults[..., :2] + deltas[..., :2] * variances[0] * defaults[..., 2:]
    size = defaults[..., 2:] * torch.exp((deltas[..., 2:] * variances[1]).clamp(max=10.0))
    return cxcywh_to_xyxy(torch.cat((centre, size), dim=-1))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``. Ties
    in score keep the lower index first (a stable sort), so the result is deterministic.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlap = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    removed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= overlap[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Per-class NMS: boxes of different labels never suppress each other.

    Each class's boxes are shifted by a distinct offset larger than every coordinate, so one NMS
    pass over the shifted boxes equals one pass per class.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (labels.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def detect(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    defaults: torch.Tensor,
    *,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    candidates: int = 400,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image: (xyxy boxes clipped to [0, 1], scores, labels 0..C-1) after per-class NMS.

    Every (default box, class) pair scoring at least ``score_threshold`` (softmax, background
    excluded) is a candidate; the ``candidates`` best go through NMS and the ``max_detections``
    best survivors are kept, best first (COCO scores at most 100 per image).
    """
    probs = torch.softmax(logits.float(), dim=-1)[..., 1:]
    boxes = decode(deltas.float(), defaults).clamp(0.0, 1.0)
    out = []
    num_classes = probs.shape[-1]
    for p, b in zip(probs, boxes):
        flat = p.reshape(-1)
        keep = torch.nonzero(flat >= score_threshold).squeeze(1)
        if keep.numel() > candidates:
            keep = keep[flat[keep].topk(candidates).indices]
        scores, labels, chosen = flat[keep], keep % num_classes, b[keep // num_classes]
        valid = (chosen[:, 2] > chosen[:, 0]) & (chosen[:, 3] > chosen[:, 1])
        scores, labels, chosen = scores[valid], labels[valid], chosen[valid]
        kept = batched_nms(chosen, scores, labels, iou_threshold)[:max_detections]
        out.append((chosen[kept], scores[kept], labels[kept]))
    return out
