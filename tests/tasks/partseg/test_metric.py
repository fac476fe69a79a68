"""mIoU the benchmark's way, against a case computed by hand."""

from __future__ import annotations

import pytest
import torch

from growprune.tasks.partseg.metric import miou, predict_parts, shape_ious

MUG, KNIFE = 11, 7  # category indices; Mug owns parts 36-37, Knife 22-23


def test_hand_computed_case() -> None:
    label = torch.tensor([[36, 36, 37, 37], [36, 36, 36, 36], [22, 22, 23, 23]])
    pred = torch.tensor([[36, 37, 37, 37], [36, 36, 36, 36], [23, 23, 22, 22]])
    category = torch.tensor([MUG, MUG, KNIFE])
    ious = shape_ious(pred, label, category)
    # shape 0: part 36 1/2, part 37 2/3 -> 7/12; shape 1: part 36 1, part 37 absent in both -> 1;
    # shape 2: nothing right -> 0.
    assert ious.tolist() == pytest.approx([7 / 12, 1.0, 0.0])
    scores = miou(ious, category)
    assert scores["instance"] == pytest.approx(19 / 36)
    assert scores["class"] == pytest.approx((19 / 24 + 0.0) / 2)  # Mug 19/24, Knife 0
    assert scores["cat_Mug"] == pytest.approx(19 / 24) and scores["cat_Knife"] == 0.0


def test_a_part_of_another_category_counts_against_the_label() -> None:
    label = torch.tensor([[36, 37]])
    pred = torch.tensor([[0, 37]])  # an airplane part on a mug: part 36 gets IoU 0
    assert shape_ious(pred, label, torch.tensor([MUG])).tolist() == pytest.approx([0.5])


def test_prediction_is_restricted_to_the_category() -> None:
    logits = torch.zeros(2, 1, 50)
    logits[:, :, 5] = 10.0  # a Bag part scores highest everywhere
    logits[0, 0, 37] = 1.0
    logits[1, 0, 22] = 1.0
    assert predict_parts(logits, torch.tensor([MUG, KNIFE])).tolist() == [[37], [22]]
