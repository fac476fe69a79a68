"""Model shapes, parameter counts, initialisation and the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from growprune.models import build_model, list_models
from growprune.tasks.classification.cnn import SmallCNN
from growprune.tasks.classification.mlp import MLP
from growprune.tasks.classification.resnet_cifar import resnet20, resnet32, resnet56
from growprune.tasks.classification.resnet_imagenet import resnet50
from tests.helpers import check_misspelled_keyword, check_unknown_name


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "kwargs", "input_shape", "classes"),
    [
        ("mlp", {}, (1, 28, 28), 10),
        ("mlp", {"in_features": 20, "hidden": (8,), "num_classes": 3, "dropout": 0.5}, (20,), 3),
        ("small_cnn", {}, (1, 28, 28), 10),
        ("small_cnn", {"in_channels": 3, "width": 8, "num_classes": 100}, (3, 32, 32), 100),
        ("resnet20", {}, (3, 32, 32), 10),
        ("resnet20", {"in_channels": 1, "width": 0.5}, (1, 28, 28), 10),
        ("resnet32", {"in_channels": 1, "width": 0.25}, (1, 28, 28), 10),
        ("resnet56", {"in_channels": 1, "width": 0.25, "num_classes": 7}, (1, 28, 28), 7),
        ("resnet50", {"num_classes": 10, "width": 0.25}, (3, 64, 64), 10),
        ("resnet50", {"in_channels": 1, "num_classes": 10, "width": 0.125}, (1, 28, 28), 10),
    ],
)
def test_forward_backward_shapes(name, kwargs, input_shape, classes) -> None:
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    x = torch.randn(3, *input_shape)
    out = model(x)
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet50_parameter_count_and_layout() -> None:
    model = resnet50()
    assert _n_params(model) == 25_557_032
    keys = set(model.state_dict())
    # torchvision names, so checkpoints and per-layer sparsity tables line up.
    for k in (
        "conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer4.2.conv3.weight",
        "layer3.5.bn2.running_mean",
        "fc.weight",
        "fc.bias",
    ):
        assert k in keys
    assert model.layer2[0].conv2.stride == (2, 2)  # "v1.5": stride on the 3x3 conv
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 6, 3]


def test_resnet50_full_size_forward() -> None:
    model = resnet50().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_cifar_resnet_depths_and_counts() -> None:
    for fn, n in ((resnet20, 3), (resnet32, 5), (resnet56, 9)):
        model = fn()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) == 6 * n + 1  # + the stem; depth counts fc as the last layer
    # Option-B shortcuts: two 1x1 projections (16->32, 32->64); 272,474 parameters.
    assert _n_params(resnet20()) == 272_474
    assert _n_params(resnet20(width=2.0)) > 3.5 * _n_params(resnet20())
    assert resnet20(width=0.5).fc.in_features == 32


def test_mlp_layout() -> None:
    model = MLP()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 300), (300, 100), (100, 10)]
    assert _n_params(model) == 266_610
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert any(isinstance(m, nn.Dropout) for m in MLP(dropout=0.2).modules())


def test_kaiming_init_scale() -> None:
    torch.manual_seed(0)
    w = MLP().features[1].weight
    assert w.std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.05)
    conv = resnet20().layer3[0].conv2.weight  # fan_out = 64 * 9
    assert conv.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


def test_small_cnn_channels_last_matches_default() -> None:
    torch.manual_seed(0)
    a = SmallCNN().eval()
    b = SmallCNN(channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    assert b.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-4)


def test_list_models() -> None:
    assert list_models() == sorted(
        [
            "llama",
            "mlp",
            "small_cnn",
            "resnet20",
            "resnet32",
            "resnet56",
            "resnet50",
            "transformer",
            "pointnet2_partseg",
            "ssd",
        ]
    )


def test_unknown_model_lists_allowed() -> None:
    check_unknown_name(build_model, "model", "vgg16", list_models())


def test_bad_kwarg_is_named() -> None:
    check_misspelled_keyword(build_model, "resnet20", "widht", "width")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet20", {"width": 0}),
        ("resnet50", {"width": -1.0}),
        ("mlp", {"dropout": 1.0}),
        ("mlp", {"hidden": (0,)}),
        ("small_cnn", {"width": 0}),
    ],
)
def test_bad_values_raise_value_error(name, kwargs) -> None:
    with pytest.raises(ValueError):
        build_model(name, **kwargs)


def test_register_model_makes_a_builder_available_by_name() -> None:
    from growprune.models import model_builder, register_model
    from growprune.models.registry import _BUILDERS

    def tiny(width: int = 3) -> torch.nn.Module:
        return torch.nn.Linear(2, width)

    try:
        assert register_model("tiny_test_model", tiny) is tiny
        assert "tiny_test_model" in list_models() and model_builder("tiny_test_model") is tiny
        assert build_model("tiny_test_model", width=5).out_features == 5
        with pytest.raises(TypeError, match="widht"):
            build_model("tiny_test_model", widht=5)
    finally:
        _BUILDERS.pop("tiny_test_model", None)
    with pytest.raises(ValueError, match="callable"):
        register_model("tiny_test_model", "not a builder")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        register_model("", tiny)
