"""Part-segmentation scores as the ShapeNet-Part benchmark defines them.

A shape's IoU is the mean, over the parts of *its category* only, of |pred ∩ label| / |pred ∪ label|
per part; a part that is absent from both the prediction and the label counts as IoU 1 (the
PointNet / PointNet++ evaluation convention). The instance-average mIoU is the mean over shapes;
the class-average mIoU is the mean over categories of the mean shape IoU within each category.
Predictions are the argmax over the category's own parts, as the reference evaluation does.
"""

from __future__ import annotations

import torch

from growprune.tasks.partseg.shapenet_part import CATEGORIES, NUM_PARTS

__all__ = ["category_part_mask", "miou", "predict_parts", "shape_ious"]


def category_part_mask(device: torch.device | str = "cpu") -> torch.Tensor:
    """(16, 50) bool: which global part ids belong to each category."""
    mask = torch.zeros(len(CATEGORIES), NUM_PARTS, dtype=torch.bool, device=device)
    for i, c in enumerate(CATEGORIES):
        mask[i, c.first_part : c.first_part + c.num_parts] = True
    return mask


def predict_parts(logits: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """(B, N) part ids: the argmax of logits (B, N, 50) over each shape's category's parts."""
    allowed = category_part_mask(logits.device)[category].unsqueeze(1)
    return logits.masked_fill(~allowed, float("-inf")).argmax(-1)


def shape_ious(pred: torch.Tensor, label: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """(S,) float64 IoU of each shape over its category's parts; pred, label (S, N), category (S,)."""
    out = torch.zeros(len(category), dtype=torch.float64, device=pred.device)
    for index in category.unique().tolist():
        c = CATEGORIES[index]
        rows = category == index
        p, y = pred[rows], label[rows]
        total = torch.zeros(int(rows.sum()), dtype=torch.float64, device=pred.device)
        for part in c.parts:
            inter = ((p == part) & (y == part)).sum(1).double()
            union = ((p == part) | (y == part)).sum(1).double()
            total += torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1))
        out[rows] = total / c.num_parts
    return out


def miou(ious: torch.Tensor, category: torch.Tensor) -> dict[str, float]:
    """Instance- and class-average mIoU, and each present category's mean, of per-shape IoUs."""
    per_category = {CATEGORIES[i].name: float(ious[category == i].mean()) for i in category.unique().tolist()}
    return {
        "instance": float(ious.mean()),
        "class": sum(per_category.values()) / len(per_category),
        **{f"cat_{name}": value for name, value in per_category.items()},
    }
