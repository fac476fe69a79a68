"""The English Bible as a causal language-modelling corpus: fixed-length blocks of BPE ids.

The verses come from :func:`growprune.data.bible.load_verses` (the translation task's reader and
book split: test = Ruth, Job, Daniel, Haggai, II Corinthians, Philemon; valid = II Chronicles,
Micah, II Thessalonians; train = the other 57 books). Each split is one token stream: every verse's
byte-level BPE ids followed by :data:`~growprune.tasks.lm.tokenizer.EOT`, in canonical order. The
BPE is trained on the training verses only.

A stream of ``L`` tokens is cut into ``(L - 1) // C`` blocks of ``C + 1`` tokens (``C`` =
``context_length``) with stride ``C``: block ``i`` is ``stream[i*C : i*C + C + 1]``, its inputs are
its first ``C`` tokens and its targets its last ``C``, so every token of the stream after the first
is predicted exactly once (the remainder shorter than a block is dropped and counted in ``stats``).
The validation and test perplexities are therefore those of the whole held-out books.

The vocabulary and the three streams are cached under ``<cache>/lm/``, keyed by the raw module
text, the vocabulary size and :data:`CORPUS_VERSION`, so a second load neither parses nor encodes.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from growprune.bounded import DataFileError, regular_file
from growprune.data.bible import SPLIT_RULE, load_verses, read_raw
from growprune.data.cache import cache_root
from growprune.files import atomic_torch_save
from growprune.tasks.lm.tokenizer import EOT, ByteBPE

__all__ = ["CORPUS_VERSION", "SPLITS", "LMData", "blocks_of", "load_bible_lm", "token_stream"]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Bump when the stream's layout (verse order, separators) or the tokenizer pipeline changes.
CORPUS_VERSION = 1
_MAX_IDS_BYTES = 1 << 30  # the three streams are ~5 MB


def token_stream(tokenizer: ByteBPE, texts: list[str]) -> torch.Tensor:
    """The ids of ``texts``, each followed by EOT, as one int64 tensor."""
    flat: list[int] = []
    for ids in tokenizer.encode_batch(texts):
        flat.extend(ids)
        flat.append(EOT)
    return torch.tensor(flat, dtype=torch.int64)


def blocks_of(stream: torch.Tensor, context_length: int) -> torch.Tensor:
    """``(N, context_length + 1)`` blocks of ``stream`` with stride ``context_length`` (see above)."""
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    n = max(0, (len(stream) - 1) // context_length)
    index = torch.arange(n)[:, None] * context_length + torch.arange(context_length + 1)
    return stream[index]


@dataclass
class LMData:
    """The tokenizer and the blocks of each split (``(N, context_length + 1)`` int64 each)."""

    tokenizer: ByteBPE
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    context_length: int
    stats: dict[str, Any] = field(default_factory=dict)


def _load_tokenizer(path: Path) -> ByteBPE:
    try:
        return ByteBPE.load(path)
    except Exception as exc:  # tokenizers raises a bare Exception for a damaged file
        raise ValueError(f"unreadable vocabulary {path}: {exc}") from exc


def _load_streams(
    language: str, vocab_size: int, cache_dir: str | None
) -> tuple[ByteBPE, dict[str, torch.Tensor]]:
    raw = read_raw(language, cache_dir)
    digest = hashlib.sha256(repr((CORPUS_VERSION, language, vocab_size)).encode())
    digest.update(hashlib.sha256(raw.encode("utf-8")).digest())
    key = digest.hexdigest()[:20]
    folder = cache_root(cache_dir) / "lm"
    vocab_path, ids_path = folder / f"bpe-{vocab_size}-{key}.json", folder / f"ids-{key}.pt"
    if vocab_path.is_file() and ids_path.is_file():
        try:
            tokenizer = _load_tokenizer(vocab_path)
            regular_file(ids_path, max_bytes=_MAX_IDS_BYTES)
            blob = torch.load(ids_path, weights_only=True)
            streams = {name: blob[name].to(torch.int64) for name in SPLITS}
            if all(int(s.max()) < tokenizer.vocab_size for s in streams.values() if len(s)):
                return tokenizer, streams
        except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError, DataFileError):
            pass  # a damaged cache is rebuilt below
    verses = load_verses(language, cache_dir)
    if not verses["train"]:
        raise ValueError("the training split is empty; check the installed Bible module")
    tokenizer = ByteBPE.train([text for _, text in verses["train"]], vocab_size)
    streams = {name: token_stream(tokenizer, [text for _, text in verses[name]]) for name in SPLITS}
    tokenizer.save(vocab_path)
    atomic_torch_save({name: s.to(torch.int32) for name, s in streams.items()}, ids_path)
    return tokenizer, streams


def load_bible_lm(
    vocab_size: int = 4096, context_length: int = 128, language: str = "en", cache_dir: str | None = None
) -> LMData:
    """The Bible language-modelling corpus of ``language`` (the English World English Bible by default).

    ``stats`` records the tokens and blocks per split, the tokens dropped at each stream's end, the
    vocabulary size and the split rule.
    """
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    tokenizer, streams = _load_streams(language, vocab_size, cache_dir)
    blocks = {name: blocks_of(streams[name], context_length) for name in SPLITS}
    for name in ("train", "valid"):
        if len(blocks[name]) == 0:
            raise ValueError(
                f"the {name} split has fewer than {context_length + 1} tokens; lower context_length"
            )
    stats: dict[str, Any] = {
        "language": language,
        "tokens": {name: len(streams[name]) for name in SPLITS},
        "blocks": {name: len(blocks[name]) for name in SPLITS},
        "dropped_tokens": {
            name: len(streams[name]) - 1 - len(blocks[name]) * context_length for name in SPLITS
        },
        "vocab_size": tokenizer.vocab_size,
        "context_length": context_length,
        "split_rule": SPLIT_RULE,
    }
    return LMData(tokenizer, blocks["train"], blocks["valid"], blocks["test"], context_length, stats)
