"""The sparsity report: every pruned layer and the overall figure, counted from the weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import make_optimizer
from tests.single_thread import single_thread  # noqa: F401 - autouse fixture


def test_plain_model_reports_default_targets() -> None:
    model = zoo.build("transformer")
    with torch.no_grad():
        model.head.weight[:2] = 0.0
    report = gp.sparsity_report(model)
    assert [layer.name for layer in report.layers] == [t.name for t in gp.find_targets(model)]
    head = next(layer for layer in report.layers if layer.name == "head.weight")
    assert head.zeros == 2 * 16 and head.sparsity == pytest.approx(32 / head.numel)
    assert report.numel == sum(layer.numel for layer in report.layers)
    assert report.overall == pytest.approx(32 / report.numel)


@pytest.mark.parametrize("case", list(zoo.CASES))
def test_report_with_sparsifier_counts_weights_not_masks(case: str) -> None:
    model = zoo.build(case)
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.6, **zoo.CASES[case].kwargs)
    report = gp.sparsity_report(model)
    assert [layer.name for layer in report.layers] == sparsifier.names
    first = sparsifier.targets[0]
    kept = sparsifier.masks[first.name].nonzero()[0].tolist()
    with torch.no_grad():
        first.param[tuple(kept)] = 0.0  # a kept weight that happens to be zero counts as a zero
    again = gp.sparsity_report(model)
    assert again.layers[0].zeros == report.layers[0].zeros + 1
    assert again.zeros == report.zeros + 1
    expected = sum(int((~m).sum()) for m in sparsifier.masks.values()) + 1
    assert again.zeros == expected and again.overall == pytest.approx(expected / again.numel)


def test_report_formats() -> None:
    model = zoo.build("mlp")
    gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5)
    report = gp.sparsity_report(model)
    data = report.to_dict()
    assert [layer["name"] for layer in data["layers"]] == ["net.0.weight", "net.2.weight", "net.4.weight"]
    assert data["overall"] == report.overall and data["zeros"] == report.zeros
    assert all(layer["sparsity"] == pytest.approx(0.5, abs=0.02) for layer in data["layers"])
    text = str(report)
    assert "net.2.weight" in text and "48x32" not in text and "32x48" in text
    assert text.splitlines()[-1].startswith("overall") and f"{report.overall:.4f}" in text.splitlines()[-1]
    markdown = report.to_markdown()
    assert markdown.count("\n") == len(report.layers) + 2 and "**overall**" in markdown


def test_report_after_remove_falls_back_to_defaults() -> None:
    model = zoo.build("tied")
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5, targets=["proj1.weight"])
    assert [layer.name for layer in gp.sparsity_report(model).layers] == ["proj1.weight"]
    sparsifier.remove()
    report = gp.sparsity_report(model)
    # the embedding and the Linear head tied to it stay dense by default
    assert [layer.name for layer in report.layers] == ["mix_a.weight", "proj1.weight", "proj2.weight"]
    assert [(d.name, d.kind, d.aliases) for d in report.left_dense] == [
        ("emb.weight", "embedding", ("emb.weight", "out.weight"))
    ]


def test_model_without_prunable_layers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no prunable parameters"):
        gp.sparsity_report(nn.Sequential(nn.LayerNorm(4)))
