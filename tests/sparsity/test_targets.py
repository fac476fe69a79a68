"""Which parameters get pruned, and the errors for requests that cannot be served."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from growprune.sparsity.targets import find_targets
from tests.helpers import Mixed
from tests.methods import zoo


def names(model: nn.Module, *args: object) -> list[str]:
    return [t.name for t in find_targets(model, *args)]  # type: ignore[arg-type]


def test_default_targets_are_linear_conv_and_attention_weights() -> None:
    assert names(zoo.build("mlp")) == ["net.0.weight", "net.2.weight", "net.4.weight"]
    assert names(zoo.build("cnn_bn")) == ["features.0.weight", "features.3.weight", "head.weight"]
    assert names(zoo.build("conv1d_depthwise")) == [
        "conv.weight",
        "depthwise.weight",
        "pointwise.weight",
        "head.weight",
    ]
    layer = ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"]
    expected = ["embed.weight", *[f"encoder.layers.{i}.{n}" for i in range(2) for n in layer], "head.weight"]
    assert names(zoo.build("transformer")) == expected


def test_attention_with_separate_projections() -> None:
    attn = nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True)
    assert names(attn) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]


def test_conv3d_and_embeddings() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Conv3d(4, 4, 3))
    assert names(model) == ["1.weight"]  # embeddings stay dense unless requested
    assert names(model, ["0.weight"]) == ["0.weight"]


def test_tied_parameters_are_one_target_under_their_first_name() -> None:
    model = zoo.build("tied")
    targets = find_targets(model, zoo.TIED_TARGETS)
    assert [t.name for t in targets] == ["emb.weight", "mix_a.weight", "proj1.weight", "proj2.weight"]
    by_name = {t.name: t for t in targets}
    assert set(by_name["emb.weight"].aliases) == {"emb.weight", "out.weight"}
    assert set(by_name["mix_a.weight"].aliases) == {"mix_a.weight", "mix_b.weight"}
    assert by_name["emb.weight"].param is model.out.weight
    # a head tied to the embedding is the embedding: dense by default, although `out` is a Linear
    assert names(model) == ["mix_a.weight", "proj1.weight", "proj2.weight"]


def test_explicit_patterns_and_exclude() -> None:
    model = zoo.build("transformer")
    assert names(model, "*.linear1.weight") == [f"encoder.layers.{i}.linear1.weight" for i in range(2)]
    left = names(model, None, ["*.self_attn.*", "embed.*"])
    assert left == ["encoder.layers.0.linear1.weight", "encoder.layers.0.linear2.weight"] + [
        "encoder.layers.1.linear1.weight",
        "encoder.layers.1.linear2.weight",
        "head.weight",
    ]


def test_pattern_matching_nothing_names_it_with_a_hint() -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match=r"pattern 'net\.0\.weigth' matches no parameter.*'net\.0\.weight'"):
        find_targets(model, ["net.0.weigth"])
    with pytest.raises(ValueError, match=r"pattern 'head\.\*' matches no parameter"):
        find_targets(model, None, "head.*")


@pytest.mark.parametrize("pattern", ["net.0.*", "*.bias", "net.*"])
def test_one_dimensional_request_names_the_parameter(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"cannot prune 'net\.0\.bias': it is 1-D"):
        find_targets(zoo.build("mlp"), pattern)


def test_norm_scale_request_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"cannot prune 'features\.1\.weight'"):
        find_targets(zoo.build("cnn_bn"), "features.*")


def test_nothing_left_is_an_error() -> None:
    with pytest.raises(ValueError, match="no prunable parameters"):
        find_targets(zoo.build("mlp"), None, "*")


def test_lazy_and_integer_parameters_are_errors() -> None:
    lazy = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ValueError, match=r"cannot prune '0\.weight'.*uninitialized"):
        find_targets(lazy)
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(3, 3, dtype=torch.int64), requires_grad=False)
    with pytest.raises(ValueError, match=r"cannot prune 'w'.*not floating point"):
        find_targets(model, "w")


def test_other_weight_kinds_can_be_requested_by_name() -> None:
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 3), nn.Bilinear(4, 4, 2))
    assert names(model, ["0.weight", "1.weight"]) == ["0.weight", "1.weight"]


def test_parametrized_linear_is_not_skipped_silently() -> None:
    """Invariant 7: a Linear under weight_norm keeps its weight as parametrizations.weight.original*,
    which growprune cannot mask in place: by default it is an error naming the layer."""
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 4)), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"cannot prune '0\.weight'.*parametrization"):
        names(model)
    # Named explicitly, the parametrization's tensors are pruned; excluded, the layer is left alone.
    assert any(
        n.startswith("0.parametrizations.weight.original") for n in names(model, ["0.parametrizations.*"])
    )
    assert names(model, None, ["0.*"]) == ["1.weight"]


def test_untargeted_matrices_are_warned_about_and_reported() -> None:
    """LSTM and ConvTranspose weights are not default targets: construction warns, the report lists them."""
    import warnings

    import torch

    import growprune as gp

    model = Mixed(fc2=False)
    with pytest.warns(UserWarning, match="lstm.weight_ih_l0") as record:
        gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.5)
    assert "emb.weight" not in str(record[0].message)  # embeddings stay dense by design
    report = gp.sparsity_report(model)
    assert [layer.name for layer in report.layers] == ["fc.weight"]
    assert {layer.name for layer in report.dense} == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "up.weight"}
    other = Mixed(fc2=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gp.OneShot(
            other, torch.optim.SGD(other.parameters(), lr=0.1), sparsity=0.5, exclude=["lstm.*", "up.*"]
        )
