"""Greedy and beam-search decoding: valid outputs, agreement with each other, batching, the length rule."""

from __future__ import annotations

import pytest
import torch

from growprune.tasks.translation.decode import (
    beam_search,
    greedy_decode,
    length_penalty_factor,
    sequence_scores,
)
from growprune.tasks.translation.model import Seq2SeqTransformer

PAD, BOS, EOS = 0, 1, 2
VOCAB = 20


def reversal_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 2-7 random tokens; targets are the reversed sources (BOS ... EOS PAD...)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((n, 8), PAD)
    tgt = torch.full((n, 10), PAD)
    for i, length in enumerate(torch.randint(2, 8, (n,), generator=g).tolist()):
        ids = torch.randint(4, VOCAB, (length,), generator=g)
        src[i, :length] = ids
        tgt[i, 0], tgt[i, 1 : length + 1], tgt[i, length + 1] = BOS, ids.flip(0), EOS
    return src, tgt


def tiny(seed: int = 0, **kwargs: object) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    config = {
        "d_model": 32,
        "heads": 2,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "ffn_dim": 64,
        "dropout": 0.0,
    }
    return Seq2SeqTransformer(VOCAB, **{**config, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained() -> Seq2SeqTransformer:
    """Learns reversal well on its training pairs but not perfectly on new ones, so beams differ."""
    model = tiny()
    src, tgt = reversal_pairs(64, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(120):
        loss, _, _ = model.loss(src, tgt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def test_src() -> torch.Tensor:
    return reversal_pairs(24, seed=1)[0]


def assert_valid(outputs: list[list[int]], n: int, max_len: int) -> None:
    assert len(outputs) == n
    for ids in outputs:
        assert len(ids) <= max_len
        assert all(0 <= i < VOCAB and i not in (PAD, BOS, EOS) for i in ids)


@pytest.mark.parametrize("beam_size", [1, 3, 6])
def test_outputs_are_valid_sequences(
    trained: Seq2SeqTransformer, test_src: torch.Tensor, beam_size: int
) -> None:
    assert_valid(beam_search(trained, test_src, beam_size=beam_size, max_len=5), 24, 5)
    assert_valid(beam_search(tiny(seed=4), test_src, beam_size=beam_size, max_len=5), 24, 5)
    assert_valid(greedy_decode(tiny(seed=4), test_src, max_len=5), 24, 5)
    assert beam_search(trained, test_src, beam_size=beam_size, max_len=0) == [[]] * 24


def test_beam_size_one_is_greedy(trained: Seq2SeqTransformer, test_src: torch.Tensor) -> None:
    assert beam_search(trained, test_src, beam_size=1) == greedy_decode(trained, test_src)
    untrained = tiny(seed=5)
    assert beam_search(untrained, test_src, beam_size=1, max_len=12) == greedy_decode(
        untrained, test_src, max_len=12
    )


def reference_score(model: Seq2SeqTransformer, src: torch.Tensor, ids: list[int], alpha: float) -> float:
    """The beam objective written out for one sentence, independently of the library's scorer:
    the model is run on each prefix alone (no batching, no padding), log p of every next token
    (the hypothesis, then EOS) is summed and divided by GNMT's ((5 + L) / 6) ** alpha."""
    length = int(src.ne(PAD).sum())
    src = src[None, :length]
    total, prefix = 0.0, [BOS]
    model.eval()
    with torch.no_grad():
        for token in [*ids, EOS]:
            logits = model(src, torch.tensor([prefix]))[0, -1].double()
            total += float(logits.log_softmax(-1)[token])
            prefix.append(token)
    return total / ((5 + len(ids) + 1) / 6) ** alpha


def test_beam_scores_at_least_greedy(trained: Seq2SeqTransformer, test_src: torch.Tensor) -> None:
    greedy = greedy_decode(trained, test_src)
    beam = beam_search(trained, test_src, beam_size=4, length_penalty=0.6)
    greedy_scores = [reference_score(trained, s, h, 0.6) for s, h in zip(test_src, greedy)]
    beam_scores = [reference_score(trained, s, h, 0.6) for s, h in zip(test_src, beam)]
    library = sequence_scores(trained, test_src, beam, length_penalty=0.6)
    assert library == pytest.approx(beam_scores, abs=1e-4)  # the library's scorer agrees
    assert all(b >= g - 1e-4 for b, g in zip(beam_scores, greedy_scores))
    assert sum(b > g + 1e-3 for b, g in zip(beam_scores, greedy_scores)) >= 3  # beams do search
    # The decoder's pick is the model's own optimum among what it found: the training targets
    # it has learned come back exactly.
    train_src, train_tgt = reversal_pairs(64, seed=0)
    expected = [row[1 : row.index(EOS)] for row in train_tgt[:8].tolist()]
    assert beam_search(trained, train_src[:8]) == expected


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_batch_equals_one_by_one(trained: Seq2SeqTransformer, test_src: torch.Tensor, decode: str) -> None:
    def run(src: torch.Tensor) -> list[list[int]]:
        if decode == "greedy":
            return greedy_decode(trained, src)
        return beam_search(trained, src, beam_size=4)

    together = run(test_src)
    for i in range(len(test_src)):
        length = int(test_src[i].ne(PAD).sum())
        assert run(test_src[i : i + 1, :length]) == [together[i]]


def test_mode_restored_and_no_grad(trained: Seq2SeqTransformer, test_src: torch.Tensor) -> None:
    model = tiny(dropout=0.3)
    first = beam_search(model, test_src, max_len=6)
    assert model.training
    assert beam_search(model, test_src, max_len=6) == first  # dropout off while decoding
    model.eval()
    greedy_decode(model, test_src, max_len=3)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def never_ends() -> Seq2SeqTransformer:
    """Whatever the input, token 5 outscores every other (EOS included) by a wide margin."""
    model = tiny(share_embeddings=False)
    with torch.no_grad():
        model.decoder.norm.weight.zero_()
        model.decoder.norm.bias.fill_(1.0)
        model.output_proj.weight.zero_()
        model.output_proj.weight[5] = 1.0
    return model


def test_default_max_len_rule() -> None:
    model = never_ends()
    src = torch.full((3, 40), PAD)
    for row, length in enumerate((1, 6, 40)):
        src[row, :length] = 7
    expected = [[5] * (n * 3 // 2 + 10) for n in (1, 6, 40)]
    assert greedy_decode(model, src) == expected
    assert beam_search(model, src, beam_size=3) == expected
    assert greedy_decode(model, src, max_len=4) == [[5] * 4] * 3
    capped = Seq2SeqTransformer(VOCAB, d_model=16, heads=2, max_positions=20)
    assert all(len(ids) <= 19 for ids in greedy_decode(capped, src[:, :19]))


def test_beam_wider_than_usable_vocabulary() -> None:
    """With 5 ids only UNK and one word may be produced; beams that cannot be filled stay empty."""
    torch.manual_seed(0)
    model = Seq2SeqTransformer(5, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32)
    src = torch.tensor([[4, 3, 4], [4, 0, 0]])
    out = beam_search(model, src, beam_size=8, max_len=4)
    assert len(out) == 2 and all(len(ids) <= 4 and set(ids) <= {3, 4} for ids in out)


def test_length_penalty_factor() -> None:
    assert length_penalty_factor(1, 0.6) == 1.0
    assert length_penalty_factor(7, 0.0) == 1.0
    assert length_penalty_factor(13, 1.0) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"length_penalty": -0.1}, "length_penalty"),
        ({"max_len": -1}, "max_len"),
        ({"max_len": 5000}, "max_len"),
        ({"eos_id": PAD}, "eos_id"),
        ({"bos_id": VOCAB}, "bos_id"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, named: str) -> None:
    src = torch.tensor([[4, 5, 6]])
    with pytest.raises(ValueError, match=named):
        beam_search(tiny(), src, **kwargs)
    if named not in ("beam_size", "length_penalty"):
        with pytest.raises(ValueError, match=named):
            greedy_decode(tiny(), src, **kwargs)
