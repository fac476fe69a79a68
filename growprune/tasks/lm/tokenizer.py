"""The language model's byte-level BPE (GPT-2's scheme, from ``tokenizers``).

Byte-level: every string encodes (no unknown token) and ``decode(encode(text)) == text``, so
greedy samples are shown as the text they are. One special token, :data:`EOT` (``<|endoftext|>``,
id 0), separates the verses of the token stream.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from growprune.bounded import regular_file
from growprune.files import atomic_write_text

__all__ = ["EOT", "EOT_TOKEN", "ByteBPE"]

EOT_TOKEN = "<|endoftext|>"
EOT = 0
_MAX_VOCABULARY_BYTES = 256 << 20


class ByteBPE:
    """A ``tokenizers.Tokenizer`` with a byte-level pipeline and :data:`EOT` at id 0."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        if tokenizer.token_to_id(EOT_TOKEN) != EOT:
            raise ValueError(
                f"tokenizer maps {EOT_TOKEN} to {tokenizer.token_to_id(EOT_TOKEN)}, expected {EOT}"
            )
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> ByteBPE:
        """Learn ``vocab_size`` ids (the 256 bytes and :data:`EOT` included); deterministic."""
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size <= len(alphabet) + 1:
            raise ValueError(
                f"vocab_size must exceed the {len(alphabet)} bytes plus {EOT_TOKEN}, got {vocab_size}"
            )
        if not texts:
            raise ValueError("cannot train a vocabulary on no texts; pass the training verses")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[EOT_TOKEN], initial_alphabet=alphabet, show_progress=False
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; an :data:`EOT` is shown as a line break (a verse boundary)."""
        pieces, run = [], []
        for i in map(int, ids):
            if i == EOT:
                pieces.append(self.tokenizer.decode(run))
                run = []
            else:
                run.append(i)
        pieces.append(self.tokenizer.decode(run))
        return "\n".join(pieces)

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), self.to_str())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ByteBPE:
        regular_file(Path(path), max_bytes=_MAX_VOCABULARY_BYTES)
        return cls(Tokenizer.from_file(str(path)))
