"""SSD's training objective: match default boxes to objects, then smooth-L1 + mined cross-entropy.

Matching (Liu et al., 2016, section 2.2): every object claims the default box that overlaps it
most, and every other default box whose best IoU with an object is at least ``threshold`` takes
that object; the rest are background. Hard-negative mining keeps, per image, only the background
boxes with the highest classification loss, three for every positive, so the loss is not swamped
by the thousands of easy background boxes. Both terms are divided by the number of positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from growprune.tasks.detection.boxes import box_iou, cxcywh_to_xyxy, encode

__all__ = ["MultiboxLoss", "match"]


def match(
    objects: torch.Tensor, defaults: torch.Tensor, threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (N,) and xyxy boxes (N, 4) assigned to the cxcywh default boxes of one image.

    ``objects`` is (M, 5) ``[label, x1, y1, x2, y2]``; rows with a negative label are padding.
    Assigned labels are ``object label + 1``; 0 means background (its box is meaningless).
    """
    real = objects[objects[:, 0] >= 0]
    n = defaults.shape[0]
    if real.shape[0] == 0:
        return torch.zeros(n, dtype=torch.long, device=defaults.device), torch.zeros_like(defaults)
    iou = box_iou(real[:, 1:], cxcywh_to_xyxy(defaults))  # (M, N)
    best_iou, best_object = iou.max(dim=0)
    best_default = iou.argmax(dim=1)
    for j, d in enumerate(best_default.tolist()):  # in object order: a later object wins a shared box
        best_object[d] = j
        best_iou[d] = 2.0
    labels = real[best_object, 0].long() + 1
    labels[best_iou < threshold] = 0
    return labels, real[best_object, 1:]


@dataclass
class MultiboxLoss:
    """The SSD loss of a batch, given the model's default boxes.

    Attributes:
        threshold: IoU at which a default box counts as matched.
        neg_pos_ratio: mined negatives per positive.
    """

    threshold: float = 0.5
    neg_pos_ratio: int = 3

    def targets(self, targets: torch.Tensor, defaults: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Matched labels (B, N) and encoded box targets (B, N, 4) of padded targets (B, M, 5)."""
        labels, boxes = zip(*(match(t, defaults, self.threshold) for t in targets))
        stacked = torch.stack(boxes)
        return torch.stack(labels), encode(stacked, defaults.expand_as(stacked))

    def __call__(
        self, logits: torch.Tensor, deltas: torch.Tensor, targets: torch.Tensor, defaults: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(loss, correctly classified positives, positives) of one batch."""
        labels, encoded = self.targets(targets, defaults)
        positive = labels > 0
        num_pos = positive.sum(dim=1)
        loc = F.smooth_l1_loss(deltas[positive], encoded[positive], reduction="sum")
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
        ce = ce.reshape(labels.shape)
        background = ce.detach().masked_fill(positive, -1.0)  # positives rank last
        order = background.sort(dim=1, descending=True, stable=True).indices
        rank = order.sort(dim=1, stable=True).indices
        num_neg = torch.minimum(self.neg_pos_ratio * num_pos, (~positive).sum(dim=1))
        negative = rank < num_neg[:, None]
        conf = ce[positive | negative].sum()
        total = int(num_pos.sum())
        loss = (loc + conf) / max(total, 1)
        correct = (logits.detach().argmax(-1)[positive] == labels[positive]).sum()
        return loss, correct, total
