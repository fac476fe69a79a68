"""Box utilities and NMS against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from growprune.tasks.detection.boxes import batched_nms, box_iou, decode, detect, encode, nms


def test_iou_hand_cases() -> None:
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 1, 1]])
    b = torch.tensor([[1.0, 1, 3, 3], [1, 1, 2, 2], [5, 5, 6, 6]])
    iou = box_iou(a, b)
    # overlap 1 of union 4 + 4 - 1; inner box 1 of 16; disjoint 0
    assert iou[0, 0].item() == pytest.approx(1 / 7)
    assert iou[1, 1].item() == pytest.approx(1 / 16)
    assert iou[2, 2].item() == 0.0
    assert iou[0, 1].item() == pytest.approx(1 / 4)  # [1,1,2,2] lies inside [0,0,2,2]
    assert box_iou(a, a).diag().tolist() == [1.0, 1.0, 1.0]
    assert box_iou(torch.tensor([[1.0, 1, 1, 1]]), a).tolist() == [[0.0, 0.0, 0.0]]  # empty box


def test_encode_hand_case_and_variances() -> None:
    box = torch.tensor([[0.4, 0.3, 0.6, 0.7]])  # centre (0.5, 0.5), size 0.2 x 0.4
    default = torch.tensor([[0.4, 0.5, 0.2, 0.2]])
    t = encode(box, default)[0].tolist()
    assert t == pytest.approx([0.1 / (0.2 * 0.1), 0.0, 0.0, math.log(2.0) / 0.2], abs=1e-5)


def test_encode_decode_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(200, 2, generator=g)
    size = 0.02 + 0.5 * torch.rand(200, 2, generator=g)
    boxes = torch.cat((centre - size / 2, centre + size / 2), dim=1)
    defaults = torch.cat((torch.rand(200, 2, generator=g), 0.05 + 0.5 * torch.rand(200, 2, generator=g)), 1)
    assert torch.allclose(decode(encode(boxes, defaults), defaults), boxes, atol=1e-5)


def test_nms_hand_case() -> None:
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 1, 10, 10]]  # A, B, C, D
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(D, A) = 0.9, IoU(D, B) = 81/109 = 0.743, IoU(A, B) = 90/110 = 0.818, C overlaps none.
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    # At 0.8 D removes A only; A would have removed B, but a suppressed box suppresses nothing.
    assert nms(boxes, scores, 0.8).tolist() == [3, 1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_nms_equal_scores_keep_the_lower_index() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    assert nms(boxes, torch.tensor([0.5, 0.5]), 0.5).tolist() == [0]


def test_batched_nms_is_per_class() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 1, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    # the second box is suppressed by the first (same class); the third, same place, is another class
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 2]


def test_detect_decodes_scores_and_suppresses() -> None:
    defaults = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.26, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2]])
    logits = torch.full((1, 3, 3), -10.0)  # background + 2 classes
    logits[0, 0, 2] = 10.0  # class 1 on box 0, sure
    logits[0, 1, 2] = 5.0  # class 1 on box 1, overlapping box 0: suppressed
    logits[0, 1, 0] = 4.0
    logits[0, 2, 0] = 10.0  # box 2: background
    deltas = torch.zeros(1, 3, 4)
    ((boxes, scores, labels),) = detect(logits, deltas, defaults, score_threshold=0.05)
    assert labels.tolist() == [1]
    assert boxes.tolist() == [pytest.approx([0.15, 0.15, 0.35, 0.35])]
    assert scores.item() == pytest.approx(1.0, abs=1e-6)
