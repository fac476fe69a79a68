"""The language model's byte-level BPE (GPT-2's scheme, from ``tokenizers``).

Byte-level: every string encodes (no unknown token) and ``decode(encode(text)) == text``, so
greedy samples are shown as the text they are. One special token, :data:`EOT` (``<|endoftext|>``,
id 0), separates the verses of the token stream.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from growprune.data.bpe import BPETokenizer

__all__ = ["EOT", "EOT_TOKEN", "ByteBPE"]

EOT_TOKEN = "<|endoftext|>"
EOT = 0


class ByteBPE(BPETokenizer):
    """A ``tokenizers.Tokenizer`` with a byte-level pipeline and :data:`EOT` at id 0."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        if tokenizer.token_to_id(EOT_TOKEN) != EOT:
            raise ValueError(
                f"tokenizer maps {EOT_TOKEN} to {tokenizer.token_to_id(EOT_TOKEN)}, expected {EOT}"
            )
        super().__init__(tokenizer)

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> ByteBPE:
        """Learn ``vocab_size`` ids (the 256 bytes and :data:`EOT` included); deterministic."""
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size <= len(alphabet) + 1:
            raise ValueError(
                f"vocab_size must exceed the {len(alphabet)} bytes plus {EOT_TOKEN}, got {vocab_size}"
            )
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return cls._trained(tok, texts, vocab_size, special_tokens=[EOT_TOKEN], initial_alphabet=alphabet)

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
