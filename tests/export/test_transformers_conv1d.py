"""Export and ``accelerate`` on GPT-2's ``Conv1D`` layers (weight ``[in, out]``), from a tiny config.

A pruned Conv1D must round-trip through the file exactly, and ``accelerate`` must either run it
sparse with the same output (``x @ W + b``) or list it with the reason it stayed dense.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.export import export_model, load, read_metadata
from growprune.inference import SparseLinear, accelerate
from tests import tiny_transformers
from tests.export.conftest import plain_state

pytest.importorskip("transformers")
pytorch_utils = pytest.importorskip("transformers.pytorch_utils")


def gpt2() -> nn.Module:
    return tiny_transformers.gpt2(seed=0, use_cache=False)


def conv1d_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, pytorch_utils.Conv1D)]


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_pruned_gpt2_round_trips_exactly(tmp_path: Path, pattern: str) -> None:
    model = gpt2()
    sparsity = 0.8 if pattern == "unstructured" else None
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=sparsity, pattern=pattern)
    out = tmp_path / "gpt2.safetensors"
    summary = export_model(model, out)
    weights = [f"{n}.weight" for n in conv1d_names(model)]
    assert summary.pruned_layers == len(weights) == 8
    assert set(read_metadata(out)["sparsity"]["layers"]) == set(weights)

    expected = plain_state(model)
    fresh = gpt2()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # nothing of the fresh model may survive the load
    loaded = load(out, model=fresh)
    state = loaded.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # the tie survives
    tokens = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, model(tokens).logits)


def test_sparse_linear_from_conv1d_computes_x_at_w_plus_b() -> None:
    torch.manual_seed(0)
    conv = pytorch_utils.Conv1D(24, 16)  # nf=24 outputs, nx=16 inputs: weight [16, 24]
    with torch.no_grad():
        conv.weight[torch.rand_like(conv.weight) < 0.8] = 0
        conv.bias.normal_()
    sparse = SparseLinear.from_conv1d(conv)
    assert (sparse.in_features, sparse.out_features) == (16, 24)
    assert torch.equal(sparse.dense_weight(), conv.weight.t())
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), x @ conv.weight + conv.bias, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sparse(x[:1, :1]), conv(x[:1, :1]), rtol=1e-5, atol=1e-5)


def test_accelerate_reports_and_converts_every_conv1d() -> None:
    model = gpt2()
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.9).remove()
    tokens = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        reference = model(tokens).logits
    names = conv1d_names(model)
    stored = {n: tuple(model.get_submodule(n).weight.shape) for n in names}  # [in, out]
    report = accelerate(model, tokens, repeats=1, force=True)
    rows = {row.name: row for row in report.layers}
    assert set(names) <= set(rows)
    for name in names:
        row = rows[name]
        assert row.kind == "Conv1D" and row.action == "csr", (name, row.reason)
        assert row.shape == stored[name]
        assert row.sparsity == pytest.approx(0.9, abs=1e-3)
        assert isinstance(model.get_submodule(name), SparseLinear)
    assert rows["lm_head"].action == "dense" and "min_sparsity" in rows["lm_head"].reason
    with torch.inference_mode():
        torch.testing.assert_close(model(tokens).logits, reference, rtol=1e-4, atol=1e-5)


def test_accelerate_lists_a_conv1d_it_leaves_dense_with_the_reason() -> None:
    model = gpt2()  # dense: nothing to gain, but every Conv1D is reported
    tokens = torch.randint(0, 100, (1, 4), generator=torch.Generator().manual_seed(0))
    report = accelerate(model, tokens, repeats=1)
    rows = {row.name: row for row in report.layers}
    for name in conv1d_names(model):
        assert rows[name].action == "dense" and "below min_sparsity" in rows[name].reason
        assert isinstance(model.get_submodule(name), pytorch_utils.Conv1D)
