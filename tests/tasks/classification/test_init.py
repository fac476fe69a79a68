"""he_init: what the classification convnets start from."""

from __future__ import annotations

import torch
from torch import nn

from growprune.tasks.classification.init import he_init


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4))


def test_batchnorms_start_as_identity_and_the_classifier_bias_at_zero() -> None:
    net = _net()
    nn.init.constant_(net[1].weight, 0.5)
    nn.init.constant_(net[3].bias, 0.5)
    he_init(net, net[3])
    assert torch.equal(net[1].weight, torch.ones(8)) and torch.equal(net[1].bias, torch.zeros(8))
    assert torch.equal(net[3].bias, torch.zeros(4))


def test_without_a_classifier_the_linear_layer_is_left_alone_and_draws_are_seeded() -> None:
    torch.manual_seed(0)
    net = _net()
    before = net[3].weight.clone()
    torch.manual_seed(1)
    he_init(net)
    assert torch.equal(net[3].weight, before)
    again = _net()
    torch.manual_seed(1)
    he_init(again)
    assert torch.equal(again[0].weight, net[0].weight)
