"""The sparsity report: every pruned layer and the overall figure, counted from the weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from tests.helpers import Mixed
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


def reasons(report: gp.SparsityReport) -> dict[str, tuple[str, str]]:
    return {d.name: (d.kind, d.reason) for d in report.left_dense}


def test_every_dense_matrix_has_its_reason() -> None:
    other = "not a Linear/Conv/Conv1D/attention weight"
    report = gp.sparsity_report(Mixed(), exclude="fc2.*")
    assert [layer.name for layer in report.layers] == ["fc.weight"]
    assert reasons(report) == {
        "emb.weight": ("embedding", "embedding"),
        "lstm.weight_ih_l0": ("other", f"{other} (LSTM)"),
        "lstm.weight_hh_l0": ("other", f"{other} (LSTM)"),
        "up.weight": ("other", f"{other} (ConvTranspose1d)"),
        "fc2.weight": ("excluded", "excluded by pattern 'fc2.*'"),
    }
    assert {layer.name for layer in report.dense} == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "up.weight"}
    named = gp.sparsity_report(Mixed(), targets=["fc.weight", "lstm.weight_hh_l0"])
    assert [layer.name for layer in named.layers] == ["lstm.weight_hh_l0", "fc.weight"]
    assert {kind for kind, _ in reasons(named).values()} == {"not_named"} and named.dense == []
    assert len(named.left_dense) == 4


def test_attached_sparsifier_leaving_a_default_layer_out_is_reported() -> None:
    model = Mixed()
    gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5, targets=["fc.weight"])
    report = gp.sparsity_report(model)
    assert [layer.name for layer in report.layers] == ["fc.weight"]
    kind, reason = reasons(report)["fc2.weight"]
    assert kind == "not_selected" and "sparsifier" in reason
    assert "fc2.weight" in {layer.name for layer in report.dense}  # dense, not by design: listed
    precise = gp.sparsity_report(model, targets=["fc.weight"])  # the sparsifier's patterns
    assert reasons(precise)["fc2.weight"] == ("not_named", "not named in `targets`")


def test_dense_reasons_in_text_markdown_and_dict() -> None:
    report = gp.sparsity_report(Mixed(), exclude="fc2.*")
    text = str(report).splitlines()
    start = text.index(next(line for line in text if line.startswith("not pruned")))
    assert text[start - 1] == "" and text[start - 2].startswith("overall")
    assert len(text) == start + 1 + len(report.left_dense)
    fc2 = next(line for line in text if line.startswith("fc2.weight"))
    assert fc2.split()[1:3] == ["4x8", "32"] and fc2.endswith("excluded by pattern 'fc2.*'")
    markdown = report.to_markdown()
    assert "| not pruned | shape | numel | reason |" in markdown
    other = "not a Linear/Conv/Conv1D/attention weight"
    assert f"| up.weight | 4x4x3 | 48 | {other} (ConvTranspose1d) |" in markdown
    rows = {row["name"]: row for row in report.to_dict()["left_dense"]}
    assert rows["emb.weight"] == {
        "name": "emb.weight",
        "shape": (10, 8),
        "kind": "embedding",
        "reason": "embedding",
        "aliases": ("emb.weight",),
        "numel": 80,
    }


def test_report_package_import_stays_light() -> None:
    """``import growprune`` imports growprune.report: it must not pull in the run report's plotting."""
    import subprocess
    import sys

    code = (
        "import sys, growprune.report; "
        "print(sorted(m for m in ('matplotlib', 'yaml', 'growprune.report.run') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
