"""PointNet++ part segmentation: its geometric operators, shapes and gradients."""

from __future__ import annotations

import torch

from growprune.models import build_model
from growprune.sparsity.targets import find_targets
from growprune.tasks.partseg.model import ball_query, farthest_point_sample, three_nn_interpolate

TINY = {"width": 0.125, "centroids": [16, 4], "neighbours": [4, 8], "dropout": 0.0}


def test_farthest_point_sample_on_a_line() -> None:
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0], [4, 0, 0]]])
    # from point 0: farthest is 5 (idx 2); then the point farthest from {0, 5} is 2 or 3 -> 2 (idx 3)
    assert farthest_point_sample(xyz, 3).tolist() == [[0, 2, 3]]


def test_ball_query_fills_with_the_first_neighbour() -> None:
    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [3, 0, 0], [0, 0.2, 0]]])
    centres = xyz[:, [0, 2]]
    assert ball_query(xyz, centres, radius=0.5, count=4).tolist() == [[[0, 1, 3, 0], [2, 2, 2, 2]]]


def test_interpolation_weights_by_inverse_squared_distance() -> None:
    source = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [10, 0, 0], [20, 0, 0]]])
    feats = torch.tensor([[[1.0], [3.0], [100.0], [500.0]]])
    target = torch.tensor([[[1.0, 0, 0]]])
    # nearest three: d^2 = 1, 1, 81 -> weights 1, 1, 1/81
    expected = (1 + 3 + 100 / 81) / (2 + 1 / 81)
    assert torch.allclose(three_nn_interpolate(target, source, feats), torch.tensor([[[expected]]]))


def test_shapes_and_a_gradient_in_every_layer() -> None:
    torch.manual_seed(0)
    model = build_model("pointnet2_partseg", point_channels=6, **TINY)
    x = torch.randn(3, 40, 6)
    out = model(x, torch.tensor([0, 11, 15]))
    assert out.shape == (3, 40, 50)
    torch.nn.functional.cross_entropy(out.reshape(-1, 50), torch.randint(0, 50, (120,))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_category_input_changes_the_output() -> None:
    torch.manual_seed(0)
    model = build_model("pointnet2_partseg", point_channels=3, **TINY).eval()
    x = torch.randn(1, 32, 3)
    assert not torch.allclose(model(x, torch.tensor([0])), model(x, torch.tensor([5])))


def test_shared_mlps_are_default_targets_with_stage_names() -> None:
    model = build_model("pointnet2_partseg", **TINY)
    names = [t.name for t in find_targets(model)]
    stages = {n.split(".")[0] for n in names}
    assert stages == {"sa1", "sa2", "sa3", "fp3", "fp2", "fp1", "head"}
    assert len(names) == 3 + 3 + 3 + 2 + 2 + 3 + 2
