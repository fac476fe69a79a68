"""The Llama-style decoder: sizes from recipe arguments, what is pruned, what stays dense."""

from __future__ import annotations

import pytest
import torch

import growprune as gp
from growprune.sparsity.targets import find_targets
from growprune.tasks.lm.model import build_llama

TARGETS = ["*self_attn.*_proj.weight", "*mlp.*_proj.weight"]


def test_sizes_come_from_the_arguments() -> None:
    model = build_llama(300, context_length=16, hidden_size=64, layers=3, heads=4, kv_heads=2)
    config = model.config
    assert (config.vocab_size, config.max_position_embeddings) == (300, 16)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 3, 4)
    assert config.num_key_value_heads == 2 and config.intermediate_size == 192  # 8/3 * 64 -> multiple of 32
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (32, 64)  # grouped-query attention
    assert model.lm_head.weight is model.model.embed_tokens.weight
    logits = model(input_ids=torch.randint(0, 300, (2, 16))).logits
    assert logits.shape == (2, 16, 300)
    with pytest.raises(ValueError, match="multiple of heads"):
        build_llama(300, hidden_size=66, heads=4)


def test_the_decoder_is_causal() -> None:
    torch.manual_seed(0)
    model = build_llama(100, context_length=8, hidden_size=32, layers=1, heads=2).eval()
    ids = torch.randint(0, 100, (1, 8))
    changed = ids.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 100
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:])


@pytest.mark.parametrize("targets", [None, TARGETS])
def test_embeddings_and_the_tied_head_stay_dense(targets: list[str] | None) -> None:
    torch.manual_seed(0)
    model = build_llama(200, context_length=8, hidden_size=32, layers=2, heads=2)
    names = {t.name for t in find_targets(model, targets)}
    expected = {
        f"model.layers.{i}.{kind}.weight"
        for i in range(2)
        for kind in (
            *(f"self_attn.{p}_proj" for p in "qkvo"),
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    }
    assert names == expected  # no embed_tokens, no lm_head (it is the embedding), no norm
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gp.OneShot(model, opt, sparsity=0.5, targets=targets, prune_step=0)  # prunes at once
    embedding = model.model.embed_tokens.weight.detach().clone()
    loss = model(input_ids=torch.randint(0, 200, (2, 8))).logits.logsumexp(-1).mean()
    loss.backward()
    opt.step()  # the masks hold after a step
    for name, param in model.named_parameters():
        zeros = float((param == 0).float().mean())
        if name in expected:
            assert zeros == pytest.approx(0.5, abs=0.02), name
        else:
            assert zeros == 0.0, name
    assert not torch.equal(model.model.embed_tokens.weight, embedding)  # trained, not frozen


def test_an_untied_head_is_a_linear_layer_the_default_targets_take() -> None:
    model = build_llama(200, context_length=8, hidden_size=32, layers=1, heads=2, tie_embeddings=False)
    assert "lm_head.weight" in {t.name for t in find_targets(model, None)}
    assert "lm_head.weight" not in {t.name for t in find_targets(model, TARGETS)}
