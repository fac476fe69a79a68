"""A shared source/target BPE vocabulary (``tokenizers``), trained once and cached.

One vocabulary for both languages lets the translation model tie its embedding and output
matrices, as the Transformer baseline of the GaP paper does; names and numbers then map to the
same pieces on both sides.

Pre-tokenization is SentencePiece-style ``Metaspace``: a space becomes part of the following
piece (``▁word``), so ``decode(encode(text)) == text`` for any text whose whitespace is already
single spaces with none at the ends (what :func:`growprune.data.bible.clean_osis` produces) and
whose characters were seen in training. Detokenized hypotheses can therefore be scored with
sacreBLEU against the raw references without a separate detokenizer.

The special tokens have fixed ids (:data:`PAD` = 0, :data:`BOS`, :data:`EOS`, :data:`UNK`), so
padding masks and decoding loops can use constants.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from growprune.data.bpe import BPETokenizer

__all__ = ["BOS", "EOS", "PAD", "SPECIAL_TOKENS", "UNK", "SubwordTokenizer", "train_or_load"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>")  # in id order
_FORMAT_VERSION = 1  # bump when the pipeline below changes, so cached vocabularies are retrained

# Always in the alphabet, seen in training or not: ASCII, Latin-1 letters and the punctuation of
# both Bibles. Otherwise a rare letter found only outside the training books (the "Î" of
# "EZECHÎAS" in II Chronicles) would encode to UNK and the verse would not round-trip.
_INITIAL_ALPHABET: tuple[str, ...] = tuple(
    [chr(c) for c in range(0x21, 0x7F)]
    + [chr(c) for c in range(0xC0, 0x100) if chr(c).isalpha()]
    + list("¡¿«»“”‘’—–…·")
)


def _check_specials(tok: Tokenizer) -> None:
    for expected, token in enumerate(SPECIAL_TOKENS):
        got = tok.token_to_id(token)
        if got != expected:
            raise ValueError(
                f"tokenizer maps {token} to id {got}, expected {expected}; retrain it with train_or_load"
            )


class SubwordTokenizer(BPETokenizer):
    """A ``tokenizers.Tokenizer`` with this project's pipeline and fixed special-token ids."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        _check_specials(tokenizer)
        super().__init__(tokenizer)
        self._specials = frozenset(range(len(SPECIAL_TOKENS)))

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> SubwordTokenizer:
        """Learn a BPE vocabulary of ``vocab_size`` entries (specials and alphabet included)."""
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}"
            )
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK]))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        return cls._trained(tok, texts, vocab_size, SPECIAL_TOKENS, _INITIAL_ALPHABET)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` up to the first EOS; PAD, BOS and UNK are skipped.

        Generated sequences are read this way: BOS starts them, EOS ends them, and what follows
        EOS in a batch is padding or garbage.
        """
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in self._specials:
                out.append(i)
        return self.tokenizer.decode(out, skip_special_tokens=True)


def cache_key(texts: Sequence[str], vocab_size: int) -> str:
    """sha256 (hex) over the pipeline version, ``vocab_size`` and every text, length-prefixed so
    that different splits of the same characters into texts never collide."""
    h = hashlib.sha256(f"subword-bpe-v{_FORMAT_VERSION}|{vocab_size}|{len(texts)}|".encode())
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def train_or_load(
    texts: Sequence[str], vocab_size: int, cache_dir: str | os.PathLike[str]
) -> SubwordTokenizer:
    """The vocabulary trained on exactly ``texts``, from ``cache_dir`` if already trained.

    Pass only training-split sentences (both languages): a vocabulary that has seen the test set
    leaks its rare words. The file name carries :func:`cache_key`, so a different training set or
    size trains a new vocabulary instead of reusing a stale one.
    """
    path = Path(cache_dir) / f"bpe-{vocab_size}-{cache_key(texts, vocab_size)[:20]}.json"
    if path.is_file():
        try:  # load refuses a foreign giant, which is then retrained over
            return SubwordTokenizer.load(path)
        except Exception:  # tokenizers raises a bare Exception; an unreadable file is retrained
            pass
    tok = SubwordTokenizer.train(texts, vocab_size)
    tok.save(path)
    return tok
