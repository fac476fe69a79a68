"""Default-box matching and the SSD loss (hard-negative mining 3:1, smooth-L1 + cross-entropy)."""

from __future__ import annotations

import math

import pytest
import torch

from growprune.tasks.detection.multibox import MultiboxLoss, match

PAD = [-1.0, -1.0, -1.0, -1.0, -1.0]


def test_match_threshold_and_forced_best_box() -> None:
    defaults = torch.tensor(
        [[0.2, 0.2, 0.2, 0.2], [0.22, 0.2, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1], [0.8, 0.8, 0.5, 0.5]]
    )
    objects = torch.tensor(
        [
            [1.0, 0.1, 0.1, 0.3, 0.3],  # = default 0 (IoU 1); default 1 overlaps it with IoU 0.18/0.22
            [0.0, 0.7, 0.7, 0.9, 0.9],  # best default 2 (inside it) has IoU 0.25 < 0.5: matched anyway
            PAD,
        ]
    )
    labels, boxes = match(objects, defaults, threshold=0.5)
    # default 1: inter 0.18 x 0.2 = 0.036, union 0.08 - 0.036 = 0.044 -> 0.818 >= 0.5: object 0
    # default 3 contains object 1 with IoU 0.04 / 0.25 = 0.16: background
    assert labels.tolist() == [2, 2, 1, 0]
    assert boxes[2].tolist() == pytest.approx([0.7, 0.7, 0.9, 0.9])
    assert boxes[1].tolist() == pytest.approx([0.1, 0.1, 0.3, 0.3])


def test_match_without_objects_is_all_background() -> None:
    labels, _ = match(torch.tensor([PAD]), torch.rand(5, 4))
    assert labels.tolist() == [0] * 5


def test_loss_hand_case_with_hard_negatives() -> None:
    # six far-apart default boxes; one object exactly on default 0
    defaults = torch.tensor([[0.1 + 0.15 * k, 0.5, 0.05, 0.05] for k in range(6)])
    box = [0.1 - 0.025, 0.5 - 0.025, 0.1 + 0.025, 0.5 + 0.025]
    targets = torch.tensor([[[1.0, *box], PAD]])
    logits = torch.zeros(1, 6, 3)  # background + 2 classes
    background = [0.0, 2.0, -1.0, 0.0, 3.0, -2.0]
    logits[0, :, 0] = torch.tensor(background)
    deltas = torch.zeros(1, 6, 4)
    deltas[0, 0, 0] = 2.0  # target offsets are all 0: smooth-L1(2) = 2 - 0.5
    deltas[0, 3, :] = 7.0  # a negative's box offsets never count
    loss, correct, count = MultiboxLoss()(logits, deltas, targets, defaults)

    def bg_loss(b: float) -> float:
        return -math.log(math.exp(b) / (math.exp(b) + 2))

    # positive: default 0 with class 1 (index 2) at logit 0 among [0, 0, 0] -> log 3.
    # negatives: 3 per positive with the highest background loss: logits -2, -1 and 0 (default 3).
    expected = 1.5 + math.log(3) + bg_loss(-2) + bg_loss(-1) + bg_loss(0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert count == 1
    assert correct.item() == 0  # argmax over equal logits picks background


def test_loss_of_an_image_without_objects_is_zero() -> None:
    defaults = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    logits = torch.randn(1, 2, 3, requires_grad=True)
    loss, _, count = MultiboxLoss()(logits, torch.zeros(1, 2, 4), torch.tensor([[PAD]]), defaults)
    assert count == 0 and loss.item() == 0.0
    loss.backward()  # still differentiable


def test_loss_falls_when_the_prediction_is_right() -> None:
    defaults = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    targets = torch.tensor([[[0.0, 0.2, 0.2, 0.4, 0.4]]])
    wrong = torch.tensor([[[0.0, 0.0, 5.0], [0.0, 5.0, 0.0]]])
    right = torch.tensor([[[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]]])
    zero = torch.zeros(1, 2, 4)
    bad, _, _ = MultiboxLoss()(wrong, zero, targets, defaults)
    good, correct, count = MultiboxLoss()(right, zero, targets, defaults)
    assert good.item() < 0.05 < bad.item()
    assert (correct.item(), count) == (1, 1)
