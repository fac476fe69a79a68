"""The ``tokenizers`` BPE wrapper the token tasks share.

The language model's byte-level vocabulary and translation's shared source/target vocabulary
differ in their pipeline (pre-tokenizer, decoder, special tokens) and in how ids read back as
text; they are trained, encoded, saved and loaded the same way, which :class:`BPETokenizer`
does once. A subclass builds its pipeline, checks its special-token ids in ``__init__`` and
writes ``decode``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from tokenizers import Tokenizer, trainers

from growprune.bounded import regular_file
from growprune.files import atomic_write_text

__all__ = ["BPETokenizer"]

# a saved vocabulary of 32k pieces is ~2 MB; a larger file is not one of ours and is not parsed
MAX_VOCABULARY_BYTES = 256 << 20

T = TypeVar("T", bound="BPETokenizer")


class BPETokenizer:
    """A ``tokenizers.Tokenizer`` (BPE model) with the calls the tasks make of it."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def _trained(
        cls: type[T],
        tok: Tokenizer,
        texts: Sequence[str],
        vocab_size: int,
        special_tokens: Sequence[str],
        initial_alphabet: Sequence[str],
    ) -> T:
        """``tok`` (an untrained BPE pipeline) trained to ``vocab_size`` entries on ``texts``.

        ``special_tokens`` get the first ids, in their order; ``initial_alphabet`` is in the
        vocabulary whether training sees it or not. Deterministic: the trainer breaks ties between
        equally frequent pairs by pair order, so the same texts give the same vocabulary with or
        without ``TOKENIZERS_PARALLELISM``.
        """
        if not texts:
            raise ValueError("cannot train a vocabulary on no texts; pass the training split's texts")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(special_tokens),
            initial_alphabet=list(initial_alphabet),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (the embedding table's row count)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Subword ids of ``text``, without special tokens (the caller frames sequences)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (one call into Rust instead of one per text)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def to_str(self) -> str:
        """The tokenizer as ``tokenizers`` JSON (what :meth:`save` writes)."""
        return self.tokenizer.to_str()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer JSON atomically (a reader never sees a partial file)."""
        atomic_write_text(Path(path), self.to_str())

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Read a file written by :meth:`save` (a regular file of at most MAX_VOCABULARY_BYTES)."""
        regular_file(Path(path), max_bytes=MAX_VOCABULARY_BYTES)
        return cls(Tokenizer.from_file(str(path)))
