"""Seq2SeqTransformer: shapes, module names, masking of padding and the future, incremental decoding."""

from __future__ import annotations

import fnmatch

import pytest
import torch
from torch import nn

from growprune.methods import OneShot
from growprune.models import build_model
from growprune.sparsity.partition import partition_layers
from growprune.sparsity.targets import find_targets, untargeted_matrices
from growprune.tasks.translation.decode import greedy_decode
from growprune.tasks.translation.model import Seq2SeqTransformer
from tests.single_thread import single_thread  # noqa: F401  (autouse fixture)

PAD, BOS, EOS = 0, 1, 2
VOCAB = 24


def tiny(**kwargs: object) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    config = {"d_model": 32, "heads": 4, "encoder_layers": 2, "decoder_layers": 2, "ffn_dim": 64}
    return Seq2SeqTransformer(VOCAB, **{**config, **kwargs})  # type: ignore[arg-type]


def batch(n: int = 3, s: int = 7, t: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``src`` and ``BOS + ids + EOS + PAD`` ``tgt`` with rows of different lengths."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (n, s), generator=g)
    tgt = torch.randint(4, VOCAB, (n, t), generator=g)
    tgt[:, 0] = BOS
    for i in range(n):
        src[i, s - i :] = PAD
        end = t - 1 - i
        tgt[i, end] = EOS
        tgt[i, end + 1 :] = PAD
    return src, tgt


def linear_names(n_enc: int, n_dec: int, shared: bool = True) -> set[str]:
    names = set()
    for i in range(n_enc):
        names |= {f"encoder.layers.{i}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")}
        names |= {f"encoder.layers.{i}.ffn.fc1", f"encoder.layers.{i}.ffn.fc2"}
    for i in range(n_dec):
        for attn in ("self_attn", "cross_attn"):
            names |= {f"decoder.layers.{i}.{attn}.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")}
        names |= {f"decoder.layers.{i}.ffn.fc1", f"decoder.layers.{i}.ffn.fc2"}
    return names if shared else names | {"output_proj"}


def test_shapes_and_loss() -> None:
    model = tiny()
    src, tgt = batch()
    logits = model(src, tgt[:, :-1])
    assert logits.shape == (3, 5, VOCAB)
    memory, pad = model.encode(src)
    assert memory.shape == (3, 7, 32) and pad.dtype == torch.bool and torch.equal(pad, src.eq(PAD))
    step_logits, cache = model.decode_step(tgt[:, :1], memory, pad)
    assert step_logits.shape == (3, VOCAB) and cache.length == 1
    loss, correct, n = model.loss(src, tgt)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert int(n) == int(tgt[:, 1:].ne(PAD).sum()) and 0 <= int(correct) <= int(n)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_module_names_for_pruning_patterns_and_partitions() -> None:
    model = tiny(encoder_layers=2, decoder_layers=3)
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert linears == linear_names(2, 3)
    assert all(nn.Linear is type(model.get_submodule(n)) for n in linears)
    assert isinstance(model.embed, nn.Embedding)
    modules = dict(model.named_modules())
    for norm in ("encoder.norm", "decoder.norm", "encoder.layers.1.norm2", "decoder.layers.2.norm3"):
        assert isinstance(modules[norm], nn.LayerNorm)
    # The library's default targets are exactly these Linears; the tied output layer stays dense.
    targets = find_targets(model)
    assert {t.name for t in targets} == {f"{n}.weight" for n in linears}
    assert untargeted_matrices(model, [t.name for t in targets]) == []
    encoder, decoder = partition_layers(
        [t.name for t in targets], [t.numel for t in targets], ["encoder.*", "decoder.*"]
    )
    assert len(encoder) == 2 * 6 and len(decoder) == 3 * 10
    assert all(fnmatch.fnmatchcase(n, "*.weight") for n in encoder + decoder)


def test_untied_embeddings() -> None:
    model = tiny(share_embeddings=False)
    names = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert names == linear_names(2, 2, shared=False)
    assert model.output_proj.bias is None
    assert not hasattr(model, "embed")
    assert isinstance(model.src_embed, nn.Embedding) and isinstance(model.tgt_embed, nn.Embedding)
    src, tgt = batch()
    loss, _, _ = model.loss(src, tgt)
    loss.backward()
    assert model.src_embed.weight.grad is not None and model.output_proj.weight.grad is not None
    model.eval()
    full = model(src, tgt[:, :-1])
    memory, pad = model.encode(src)
    first, _ = model.decode_step(tgt[:, :1], memory, pad)
    torch.testing.assert_close(first, full[:, 0], atol=1e-5, rtol=0)


def test_init_pad_rows_and_registry() -> None:
    model = build_model("transformer", vocab_size=VOCAB, d_model=16, heads=2, ffn_dim=32, pad_id=3)
    assert isinstance(model, Seq2SeqTransformer)
    assert torch.count_nonzero(model.embed.weight[3]) == 0
    assert torch.count_nonzero(model.encoder.layers[0].ffn.fc1.bias) == 0
    assert "positions" not in model.state_dict()  # recomputed from the config


def test_padding_does_not_change_real_positions() -> None:
    model = tiny().eval()
    src, tgt = batch()
    padded = torch.cat([src, torch.full((3, 5), PAD)], dim=1)
    with torch.no_grad():
        a, b = model(src, tgt[:, :-1]), model(padded, tgt[:, :-1])
        mem_a, _ = model.encode(src)
        mem_b, _ = model.encode(padded)
    real = src.ne(PAD)
    torch.testing.assert_close(mem_a[real], mem_b[:, :7][real], atol=1e-5, rtol=0)
    keep = tgt[:, :-1].ne(PAD)
    torch.testing.assert_close(a[keep], b[keep], atol=1e-5, rtol=0)


def test_causal_future_tokens_do_not_leak() -> None:
    model = tiny().eval()
    src, tgt = batch()
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(4, VOCAB, changed[:, 3:].shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = model(src, tgt[:, :-1]), model(src, changed[:, :-1])
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=1e-5, rtol=0)
    assert not torch.allclose(a[:, 3:], b[:, 3:])


@pytest.mark.parametrize("shared", [True, False])
def test_incremental_decoding_matches_forward(shared: bool) -> None:
    model = tiny(share_embeddings=shared).eval()
    src, tgt = batch(n=4, s=9, t=8)
    with torch.no_grad():
        full = model(src, tgt[:, :-1])
        memory, pad = model.encode(src)
        cache, steps = None, []
        for t in range(tgt.shape[1] - 1):
            logits, cache = model.decode_step(tgt[:, t : t + 1], memory, pad, cache)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=0)


def test_reorder_cache_selects_rows() -> None:
    model = tiny().eval()
    src, tgt = batch(n=3)
    with torch.no_grad():
        memory, pad = model.encode(src)
        _, cache = model.decode_step(tgt[:, :1], memory, pad)
        index = torch.tensor([2, 0, 0])
        moved = model.reorder_cache(cache, index)
        a, _ = model.decode_step(tgt[index, 1:2], None, None, moved)
        b, _ = model.decode_step(tgt[:, 1:2], None, None, cache)
    torch.testing.assert_close(a, b[index], atol=1e-6, rtol=0)


def test_dropout_only_in_train_mode() -> None:
    model = tiny(dropout=0.3)
    src, tgt = batch()
    assert not torch.allclose(model(src, tgt[:, :-1]), model(src, tgt[:, :-1]))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt[:, :-1]), model(src, tgt[:, :-1]), atol=0, rtol=0)


def test_masked_weights_take_effect_and_still_run() -> None:
    model = tiny(dropout=0.1)
    src, tgt = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sparsifier = OneShot(model, optimizer, sparsity=0.9)
    assert model.decoder.layers[0].ffn.fc1.weight.eq(0).float().mean() >= 0.89
    loss, _, _ = model.loss(src, tgt)
    loss.backward()
    optimizer.step()
    sparsifier.step()
    assert torch.isfinite(loss)
    assert model.decoder.layers[0].ffn.fc1.weight.eq(0).float().mean() >= 0.89
    outputs = greedy_decode(model, src, max_len=5)
    assert len(outputs) == 3 and all(len(o) <= 5 for o in outputs)
    # Zeroed weights act immediately: no fused copy of them survives. With every cross-attention
    # output projection zero, the decoder no longer sees the source at all.
    model.eval()
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.cross_attn.out_proj.weight.zero_()
            layer.cross_attn.out_proj.bias.zero_()
        other = torch.randint(4, VOCAB, src.shape, generator=torch.Generator().manual_seed(9))
        torch.testing.assert_close(model(src, tgt[:, :-1]), model(other, tgt[:, :-1]), atol=1e-5, rtol=0)


@pytest.mark.trajectory
def test_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = Seq2SeqTransformer(
        16, d_model=32, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=64, dropout=0.0
    )
    g = torch.Generator().manual_seed(3)
    src = torch.randint(4, 16, (8, 6), generator=g)
    ids = torch.randint(4, 16, (8, 5), generator=g)
    tgt = torch.cat([torch.full((8, 1), BOS), ids, torch.full((8, 1), EOS)], dim=1)
    src[4:, 4:] = PAD  # some shorter sources
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss, correct, n = model.loss(src, tgt, label_smoothing=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05 and int(correct) == int(n)
    assert greedy_decode(model, src) == ids.tolist()
    assert model.training  # decoding restored the mode


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"vocab_size": 3}, "vocab_size"),
        ({"pad_id": VOCAB}, "pad_id"),
        ({"d_model": 30, "heads": 4}, "d_model"),
        ({"encoder_layers": 0}, "encoder_layers"),
        ({"ffn_dim": 0}, "ffn_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"max_positions": 1}, "max_positions"),
    ],
)
def test_bad_config_names_the_argument(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Seq2SeqTransformer(**{"vocab_size": VOCAB, "d_model": 16, "heads": 2, **kwargs})


def test_bad_inputs_raise() -> None:
    model = tiny(max_positions=8)
    src, tgt = batch()
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.cat([src, src], dim=1), tgt[:, :-1])
    empty = src.clone()
    empty[1] = PAD
    with pytest.raises(ValueError, match="non-PAD"):
        model.encode(empty)
    with pytest.raises(ValueError, match="tokens"):
        memory, pad = model.encode(src)
        model.decode_step(tgt[:2, :1], memory, pad)
    with pytest.raises(ValueError, match="label_smoothing"):
        model.loss(src, tgt, label_smoothing=1.0)
