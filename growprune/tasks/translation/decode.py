"""Greedy and beam-search decoding for :class:`~growprune.tasks.translation.model.Seq2SeqTransformer`.

Both decode a whole batch at once with the model's incremental key/value cache, and drop rows
from the batch as soon as their sentence is finished, so a batch of mixed lengths costs little
more than its longest sentence.

Length limit: unless ``max_len`` is given, sentence ``i`` may produce at most
``floor(1.5 * n_i) + 10`` tokens, ``n_i`` being its number of non-PAD source tokens (the usual
"source length times a margin plus a constant" rule: es->en translations run about as long as
their sources), capped at ``model.max_positions - 1``. The limit is per sentence, so a sentence
decodes the same alone as inside any batch. A hypothesis that reaches its limit is ended with
EOS (its EOS log-probability counts in the beam score), so every returned sequence is at most
the limit long.

PAD and BOS are never produced; returned id lists hold neither BOS nor EOS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from growprune.tasks.translation.model import Seq2SeqTransformer

__all__ = ["beam_search", "greedy_decode", "length_penalty_factor", "sequence_scores"]


def length_penalty_factor(length: int | torch.Tensor, alpha: float) -> float | torch.Tensor:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016); length counts the EOS."""
    return ((5.0 + length) / 6.0) ** alpha


@contextmanager
def _decoding(model: Seq2SeqTransformer) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd while decoding; the caller's mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _limits(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int | None) -> torch.Tensor:
    """Most tokens (EOS excluded) each sentence may produce; see the module docstring."""
    cap = model.max_positions - 1
    if max_len is None:
        lengths = src.ne(model.pad_id).sum(dim=1)
        return torch.clamp(lengths * 3 // 2 + 10, max=cap)
    if not 0 <= max_len <= cap:
        raise ValueError(f"max_len must be in [0, {cap}] (the model's max_positions - 1), got {max_len}")
    return torch.full((src.shape[0],), max_len, dtype=torch.long, device=src.device)


def _next_log_probs(
    model: Seq2SeqTransformer, logits: torch.Tensor, force_eos: torch.Tensor, bos_id: int, eos_id: int
) -> torch.Tensor:
    """Model log-probs with PAD and BOS ruled out, and only EOS left for rows in ``force_eos``.

    The remaining entries keep their full-softmax values (no renormalising), so beam scores are
    the model's own sequence log-probabilities.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    logp[:, [model.pad_id, bos_id]] = float("-inf")
    not_eos = torch.arange(logp.shape[1], device=logp.device).ne(eos_id)
    return logp.masked_fill(force_eos[:, None] & not_eos, float("-inf"))


def _check_ids(model: Seq2SeqTransformer, bos_id: int, eos_id: int) -> None:
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if not 0 <= value < model.vocab_size or value == model.pad_id:
            raise ValueError(f"{name} must be a non-PAD id in [0, {model.vocab_size}), got {value}")


def greedy_decode(
    model: Seq2SeqTransformer,
    src: torch.Tensor,
    bos_id: int = 1,
    eos_id: int = 2,
    max_len: int | None = None,
) -> list[list[int]]:
    """Most probable next token at every step, for a right-padded batch ``src`` (B, S).

    Returns one id list per sentence, without BOS/EOS.
    """
    _check_ids(model, bos_id, eos_id)
    with _decoding(model):
        limits = _limits(model, src, max_len)
        memory, pad = model.encode(src)
        cache = model.init_cache(memory, pad)
        rows = torch.arange(src.shape[0], device=src.device)  # sentence of each live row
        tokens = src.new_full((src.shape[0], 1), bos_id)
        prefix = src.new_empty((src.shape[0], 0))
        out: list[list[int]] = [[] for _ in range(src.shape[0])]
        step = 0
        while rows.numel():
            step += 1
            logits, cache = model.decode_step(tokens, None, None, cache)
            choice = _next_log_probs(model, logits, step > limits, bos_id, eos_id).argmax(dim=-1)
            prefix = torch.cat([prefix, choice[:, None]], dim=1)
            ended = choice.eq(eos_id)
            if bool(ended.any()):
                for i in ended.nonzero()[:, 0].tolist():
                    out[int(rows[i])] = prefix[i, :-1].tolist()
                keep = (~ended).nonzero()[:, 0]
                rows, prefix, limits, choice = rows[keep], prefix[keep], limits[keep], choice[keep]
                if keep.numel():
                    cache = model.reorder_cache(cache, keep)
            tokens = choice[:, None]
        return out


def beam_search(
    model: Seq2SeqTransformer,
    src: torch.Tensor,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    bos_id: int = 1,
    eos_id: int = 2,
    max_len: int | None = None,
) -> list[list[int]]:
    """Beam search over a right-padded batch ``src`` (B, S), all sentences x beams at once.

    Each step extends every live hypothesis and keeps the ``beam_size`` best extensions per
    sentence; an extension ending in EOS is moved to the sentence's finished set (scored
    log-prob / ``length_penalty_factor(len + 1, length_penalty)``) and leaves a gap in the beam
    for that step. A sentence stops once no live hypothesis can beat its best finished one: a
    live score ``s <= 0`` can end no higher than ``s / length_penalty_factor(limit + 1)``, which is
    exact pruning, not a heuristic. With ``beam_size=1`` the first EOS ends the sentence, which
    makes it the same as :func:`greedy_decode`.

    Returns the best finished hypothesis of each sentence, without BOS/EOS.
    """
    _check_ids(model, bos_id, eos_id)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if length_penalty < 0:
        raise ValueError(
            f"length_penalty must be >= 0 (the stopping rule relies on it), got {length_penalty}"
        )
    k = beam_size
    with _decoding(model):
        device = src.device
        limits = _limits(model, src, max_len)
        memory, pad = model.encode(src)
        n = src.shape[0]
        cache = model.reorder_cache(
            model.init_cache(memory, pad), torch.arange(n, device=device).repeat_interleave(k)
        )
        sent = torch.arange(n, device=device)  # sentence of each live beam group
        # Only beam 0 starts live, so the first step does not pick k copies of one token.
        scores = torch.full((n, k), float("-inf"), device=device)
        scores[:, 0] = 0.0
        tokens = src.new_full((n * k, 1), bos_id)
        prefix = src.new_empty((n * k, 0))
        best_score = [float("-inf")] * n
        best: list[list[int]] = [[] for _ in range(n)]
        step = 0
        while sent.numel():
            step += 1
            live = sent.numel()
            logits, cache = model.decode_step(tokens, None, None, cache)
            force = (step > limits).repeat_interleave(k)
            logp = _next_log_probs(model, logits, force, bos_id, eos_id)
            vocab = logp.shape[1]
            top, flat = (scores.reshape(-1, 1) + logp).view(live, k * vocab).topk(k, dim=1)
            origin = flat // vocab + torch.arange(live, device=device)[:, None] * k  # source rows
            token = flat % vocab
            prefix = torch.cat([prefix[origin.reshape(-1)], token.reshape(-1, 1)], dim=1)
            is_eos = token.eq(eos_id)
            penalty = float(length_penalty_factor(step, length_penalty))
            for i, j in (is_eos & top.isfinite()).nonzero().tolist():
                s = int(sent[i])
                value = float(top[i, j]) / penalty
                if value > best_score[s]:
                    best_score[s], best[s] = value, prefix[i * k + j, :-1].tolist()
            scores = top.masked_fill(is_eos, float("-inf"))
            alive = scores.max(dim=1).values
            bound = alive / length_penalty_factor((limits + 1).float(), length_penalty)
            finished = torch.tensor([best_score[s] for s in sent.tolist()], device=device)
            done = ~alive.isfinite() | bound.le(finished)
            if bool(done.any()):
                keep = (~done).nonzero()[:, 0]
                cache = cache.select(origin[keep].reshape(-1))
                prefix = prefix.view(live, k, step)[keep].reshape(-1, step)
                sent, limits, scores, token = sent[keep], limits[keep], scores[keep], token[keep]
            else:
                cache = cache.select(origin.reshape(-1), cross=False)
            tokens = token.reshape(-1, 1)
        return best


def sequence_scores(
    model: Seq2SeqTransformer,
    src: torch.Tensor,
    hypotheses: Sequence[Sequence[int]],
    length_penalty: float = 0.6,
    bos_id: int = 1,
    eos_id: int = 2,
) -> list[float]:
    """The beam-search objective of given outputs: sum log p(ids + EOS) / length_penalty_factor(len + 1).

    Useful to compare decoders (or rescore) under the model's own criterion.
    """
    if len(hypotheses) != src.shape[0]:
        raise ValueError(f"need one hypothesis per src row ({src.shape[0]}), got {len(hypotheses)}")
    with _decoding(model):
        width = max(len(h) for h in hypotheses) + 2
        tgt = src.new_full((len(hypotheses), width), model.pad_id)
        for i, h in enumerate(hypotheses):
            tgt[i, : len(h) + 2] = torch.tensor([bos_id, *h, eos_id])
        labels = tgt[:, 1:]
        logp = F.log_softmax(model(src, tgt[:, :-1]).float(), dim=-1)
        token_logp = logp.gather(2, labels[..., None])[..., 0].masked_fill(labels.eq(model.pad_id), 0.0)
        totals = token_logp.sum(dim=1).tolist()
    return [t / float(length_penalty_factor(len(h) + 1, length_penalty)) for t, h in zip(totals, hypotheses)]
