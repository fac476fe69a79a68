"""Sparse inference: converted layers compute what the dense masked model computes.

No timing assertions: machines running the suite are shared and noisy, and whether CSR wins on
a layer is exactly what ``accelerate`` measures. ``force=True`` converts regardless, so the
conversions themselves are checked deterministically.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from benchmarks.inference import prune
from growprune.inference import (
    SparseLinear,
    accelerate,
    is_n_m,
    measure,
    relative_error,
    semi_structured_unsupported,
)


def _mlp(sparsity: float = 0.9) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    return prune(model, str(sparsity))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (2, 3, 64), (64,)])
def test_sparse_linear_matches_linear(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=bias)
    with torch.no_grad():
        linear.weight[torch.rand_like(linear.weight) < 0.8] = 0
    sparse = SparseLinear.from_linear(linear)
    assert sparse.weight_csr.col_indices().dtype == torch.int32
    assert torch.equal(sparse.dense_weight(), linear.weight)
    x = torch.randn(shape)
    with torch.no_grad():
        out, ref = sparse(x), linear(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_forced_conversion_matches_the_dense_masked_model() -> None:
    model = _mlp()
    x = torch.randn(4, 64)
    with torch.no_grad():
        reference = model(x)
    report = accelerate(model, x, repeats=1, force=True)
    assert [row.action for row in report.layers] == ["csr"] * 3
    assert all(isinstance(model[i], SparseLinear) for i in (0, 2, 4))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x[:1]), reference[:1], rtol=1e-4, atol=1e-5)
    assert report.model_dense_ms is not None and report.model_converted_ms is not None


def test_measured_conversion_keeps_outputs_and_reports_every_layer() -> None:
    model = _mlp(0.95)
    x = torch.randn(1, 64)
    with torch.no_grad():
        reference = model(x)
    report = accelerate(model, x, repeats=3)
    assert [row.name for row in report.layers] == ["0", "2", "4"]
    for row in report.layers:
        assert row.dense_ms is not None and row.sparse_ms is not None and row.reason
        assert isinstance(model.get_submodule(row.name), SparseLinear) == (row.action == "csr")
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-5)
    text = str(report)
    assert "layers converted on cpu" in text and "speed-up" in text
    assert report.to_dict()["layers"][0]["name"] == "0"
    assert report.to_markdown().count("\n|") >= 4


def test_dense_layers_are_not_tried_and_convolutions_stay_dense() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 8)).eval()
    report = accelerate(model, torch.randn(2, 1, 8, 8), repeats=1)
    conv, linear = report.layers
    assert conv.kind == "Conv2d" and conv.action == "dense" and "convolution" in conv.reason
    assert linear.action == "dense" and "below min_sparsity" in linear.reason
    assert isinstance(model[2], nn.Linear)


def test_unused_layer_is_reported() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = prune(Model(), "0.9")
    report = accelerate(model, torch.randn(1, 8), repeats=1, force=True)
    unused = next(r for r in report.layers if r.name == "unused")
    assert unused.action == "dense" and "not called" in unused.reason


def test_transformer_encoder_converted_matches_fused_dense() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
    model = prune(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), "0.9")
    x = torch.randn(2, 5, 32)
    with torch.inference_mode():
        reference = model(x)  # the fused fast path
    report = accelerate(model, x, repeats=1, force=True)
    kinds = {row.name: (row.kind, row.action) for row in report.layers}
    assert kinds["layers.0.self_attn"] == ("MultiheadAttention", "dense")
    assert kinds["layers.0.linear1"] == ("Linear", "csr") and kinds["layers.1.linear2"] == ("Linear", "csr")
    assert "fused" in next(r for r in report.layers if r.name == "layers.0.self_attn").reason
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-4)
        mask = torch.zeros(2, 5, dtype=torch.bool)
        mask[1, 3:] = True  # a padding mask must not route the converted layers onto the nested fast path
        model(x, src_key_padding_mask=mask)


def test_two_four_on_cpu_says_a_gpu_is_needed() -> None:
    torch.manual_seed(0)
    model = prune(nn.Sequential(nn.Linear(64, 64)), "2:4")
    assert is_n_m(model[0].weight)
    assert "CUDA GPU" in (semi_structured_unsupported(model[0].weight) or "")
    report = accelerate(model, torch.randn(1, 64), repeats=1)
    assert "2:4 pattern, but 2:4 semi-structured kernels need a CUDA GPU" in report.layers[0].reason


def test_is_n_m() -> None:
    assert is_n_m(torch.tensor([[1.0, 0.0, 2.0, 0.0]]))
    assert not is_n_m(torch.tensor([[1.0, 3.0, 2.0, 0.0]]))
    assert not is_n_m(torch.ones(2, 6))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_semi_structured_on_gpu() -> None:  # pragma: no cover - not run on the CPU-only CI
    torch.manual_seed(0)
    model = prune(nn.Sequential(nn.Linear(256, 256)), "2:4").cuda().half()
    x = torch.randn(64, 256, device="cuda", dtype=torch.half)
    with torch.inference_mode():
        reference = model(x)
    report = accelerate(model, x, repeats=2, methods=("semi_structured",), force=True)
    with torch.inference_mode():
        assert relative_error(reference, model(x)) < 2e-2
    assert report.layers[0].candidate in (None, "semi_structured")


def test_measure_and_relative_error() -> None:
    timings = measure({"a": lambda: sum(range(100)), "b": lambda: sum(range(10))}, repeats=4)
    assert set(timings) == {"a", "b"} and all(len(t.samples) == 4 for t in timings.values())
    assert timings["a"].median_ms >= 0 and timings["a"].min_ms <= timings["a"].median_ms
    assert relative_error((torch.ones(3),), (torch.ones(3) * 1.01,)) == pytest.approx(0.01, rel=1e-3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown methods"):
        accelerate(_mlp(), torch.randn(1, 64), methods=("bsr",))


def test_top_level_api() -> None:
    assert gp.accelerate is accelerate and callable(gp.load) and callable(gp.export_model)
