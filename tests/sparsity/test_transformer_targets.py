"""Default targets of Hugging Face transformers models built from tiny configs (nothing downloaded).

GPT-2 keeps its linear layers in transformers' ``Conv1D`` (weight ``[in, out]``) and ties
``lm_head`` to the token embedding; BERT ties its MLM decoder to the word embeddings; Llama ties
``lm_head`` only when asked. Expected values are computed here from the modules themselves,
independently of growprune's target rules.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import growprune as gp
from growprune.sparsity.targets import find_targets, is_conv1d
from tests import tiny_transformers

pytest.importorskip("transformers")
pytorch_utils = pytest.importorskip("transformers.pytorch_utils")

GPT2_LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def gpt2() -> nn.Module:
    return tiny_transformers.gpt2(seed=0)


def bert() -> nn.Module:
    return tiny_transformers.bert(masked_lm=True, seed=0, max_position_embeddings=32)


def llama(tie: bool) -> nn.Module:
    return tiny_transformers.llama(seed=0, tie_word_embeddings=tie)


def linear_weights(model: nn.Module, *, besides: torch.Tensor | None = None) -> list[str]:
    """Names of nn.Linear weights (first name of each tensor), leaving out the tensor `besides`."""
    names, seen = [], set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.weight is not besides and id(module.weight) not in seen:
            seen.add(id(module.weight))
            names.append(f"{name}.weight")
    return names


def test_gpt2_default_targets_are_exactly_the_conv1d_weights() -> None:
    model = gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie this test is about
    targets = find_targets(model)
    expected = [f"transformer.h.{i}.{layer}.weight" for i in range(2) for layer in GPT2_LAYERS]
    assert [t.name for t in targets] == expected
    assert all(isinstance(t.module, pytorch_utils.Conv1D) and t.input_first for t in targets)
    aliases = {a for t in targets for a in t.aliases}
    assert not aliases & {"lm_head.weight", "transformer.wte.weight", "transformer.wpe.weight"}


def test_gpt2_sparsifier_warns_about_nothing_and_leaves_embeddings_dense() -> None:
    model = gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparsifier = gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.8)
    assert len(sparsifier.names) == 8
    assert int((model.transformer.wte.weight == 0).sum()) == 0
    for name in sparsifier.names:
        weight = model.get_parameter(name)
        assert abs(int((weight == 0).sum()) - 0.8 * weight.numel()) <= 1  # invariant 3: within one


def test_gpt2_explicit_targets() -> None:
    """Named Conv1D weights are input-first too; embeddings are prunable when named, under either alias."""
    model = gpt2()
    named = find_targets(model, "*.mlp.c_fc.weight")
    assert [t.name for t in named] == [f"transformer.h.{i}.mlp.c_fc.weight" for i in range(2)]
    assert all(t.input_first for t in named)
    for alias in ("transformer.wte.weight", "lm_head.weight"):
        (target,) = find_targets(model, alias)
        assert target.name == "transformer.wte.weight" and not target.input_first
        assert set(target.aliases) == {"transformer.wte.weight", "lm_head.weight"}
        assert target.param is model.lm_head.weight


def test_gpt2_report_says_why_embeddings_stay_dense() -> None:
    model = gpt2()
    report = gp.sparsity_report(model)
    assert len(report.layers) == 8 and report.dense == []
    by_name = {d.name: d for d in report.left_dense}
    assert set(by_name) == {"transformer.wte.weight", "transformer.wpe.weight"}
    wte = by_name["transformer.wte.weight"]
    assert wte.kind == "embedding" and wte.aliases == ("transformer.wte.weight", "lm_head.weight")
    assert "lm_head.weight" in wte.reason and wte.shape == (100, 32) and wte.numel == 3200
    assert by_name["transformer.wpe.weight"].reason == "embedding"
    text, markdown = str(report), report.to_markdown()
    assert "embedding (tied to 'lm_head.weight')" in text
    assert "| transformer.wte.weight | 100x32 | 3200 | embedding (tied to 'lm_head.weight') |" in markdown
    rows = report.to_dict()["left_dense"]
    assert [row["kind"] for row in rows] == ["embedding", "embedding"]


def test_gpt2_cgap_trains_through_the_language_model_loss() -> None:
    model = gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sparsifier = gp.CGaP(model, optimizer, sparsity=0.8, partitions=2, steps_per_phase=2, rounds=1)
    tokens = torch.randint(0, 100, (4, 12), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(sparsifier.total_steps):
        loss = model(input_ids=tokens, labels=tokens).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    for name in sparsifier.names:  # the final prune leaves every Conv1D at 80%
        weight = model.get_parameter(name)
        assert abs(int((weight == 0).sum()) - 0.8 * weight.numel()) <= 1, name
    assert int((model.lm_head.weight == 0).sum()) == 0


def test_gpt2_two_four_groups_run_along_the_input_dimension() -> None:
    """2:4 on Conv1D [in, out]: 2 of every 4 consecutive weights down dim 0 (per output column),
    and the layer computes what the equivalent nn.Linear (weight W.T, 2:4 by rows) computes."""
    model = gpt2()
    conv = model.transformer.h[0].mlp.c_fc
    dense = conv.weight.detach().clone()  # [in=32, out=128]
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=None, pattern="2:4")

    # Expectation built on the Linear layout: rows of W.T are outputs, 4 consecutive inputs a group.
    w_t = dense.t()  # [out, in]
    groups = w_t.abs().reshape(w_t.shape[0], -1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.topk(2, dim=2).indices, True)
    expected_weight = (w_t * keep.reshape(w_t.shape)).t()
    assert torch.equal(conv.weight.detach(), expected_weight)
    kept_per_group = (conv.weight.detach() != 0).t().reshape(128, 8, 4).sum(dim=2)
    assert (kept_per_group == 2).all()

    linear = nn.Linear(32, 128)
    with torch.no_grad():
        linear.weight.copy_(w_t * keep.reshape(w_t.shape))
        linear.bias.copy_(conv.bias)
    x = torch.randn(3, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), linear(x))
        torch.testing.assert_close(conv(x), F.linear(x, expected_weight.t(), conv.bias))


def test_bert_default_targets_are_its_linears_but_the_tied_decoder() -> None:
    model = bert()
    word = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight is word
    targets = find_targets(model)
    assert [t.name for t in targets] == linear_weights(model, besides=word)
    assert not any(t.input_first for t in targets)
    report = gp.sparsity_report(model)
    kinds = {d.name: (d.kind, d.aliases) for d in report.left_dense}
    assert kinds == {
        "bert.embeddings.word_embeddings.weight": (
            "embedding",
            ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"),
        ),
        "bert.embeddings.position_embeddings.weight": (
            "embedding",
            ("bert.embeddings.position_embeddings.weight",),
        ),
        "bert.embeddings.token_type_embeddings.weight": (
            "embedding",
            ("bert.embeddings.token_type_embeddings.weight",),
        ),
    }


@pytest.mark.parametrize("tie", [True, False])
def test_llama_default_targets_are_its_projections(tie: bool) -> None:
    """A tied lm_head is the embedding and stays dense; an untied one is an ordinary Linear."""
    model = llama(tie)
    embed = model.model.embed_tokens.weight
    assert (model.lm_head.weight is embed) == tie
    names = [t.name for t in find_targets(model)]
    assert names == linear_weights(model, besides=embed)
    assert ("lm_head.weight" in names) == (not tie)
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert sum(any(f".{p}." in n for p in projections) for n in names) == 2 * len(projections)
    (left,) = gp.sparsity_report(model).left_dense
    assert left.name == "model.embed_tokens.weight" and left.kind == "embedding"
    assert left.aliases == (
        ("model.embed_tokens.weight", "lm_head.weight") if tie else ("model.embed_tokens.weight",)
    )


class Conv1D(nn.Module):
    """A stand-in with transformers' Conv1D interface: found by class name and ``nf``."""

    def __init__(self, nf: int, nx: int, *, with_nf: bool = True) -> None:
        super().__init__()
        if with_nf:
            self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def test_conv1d_is_recognised_by_name_and_nf_without_transformers_types() -> None:
    assert is_conv1d(Conv1D(8, 4)) and not is_conv1d(Conv1D(8, 4, with_nf=False))
    assert not is_conv1d(nn.Conv1d(4, 8, 3)) and not is_conv1d(nn.Linear(4, 8))
    model = nn.Sequential(Conv1D(8, 4), Conv1D(8, 4, with_nf=False))
    (target,) = find_targets(model)
    assert target.name == "0.weight" and target.input_first


def test_weight_read_as_in_out_and_out_in_is_an_error() -> None:
    model = nn.Module()
    model.conv = Conv1D(8, 8)
    model.linear = nn.Linear(8, 8)
    model.linear.weight = model.conv.weight
    with pytest.raises(ValueError, match=r"cannot prune 'conv\.weight'.*\[in, out\].*'linear\.weight'"):
        find_targets(model)


def test_linear_registered_before_a_tied_embedding_is_dense_and_says_so() -> None:
    """The tie is found through any alias, whichever name comes first."""
    model = nn.Module()
    model.head = nn.Linear(8, 20, bias=False)
    model.body = nn.Linear(8, 8)
    model.emb = nn.Embedding(20, 8)
    model.emb.weight = model.head.weight
    assert [t.name for t in find_targets(model)] == ["body.weight"]
    (left,) = gp.sparsity_report(model).left_dense
    assert (left.name, left.kind, left.reason) == (
        "head.weight",
        "tied_to_embedding",
        "tied to embedding 'emb.weight'",
    )
