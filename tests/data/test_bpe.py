"""The shared BPE wrapper: what both token tasks' tokenizers inherit (their pipelines are tested in
their task folders)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from growprune.bounded import DataFileError
from growprune.data import bpe
from growprune.data.bpe import BPETokenizer

TEXTS = ["the cat sat on the mat", "the dog sat on the log"] * 4


def _trained() -> BPETokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return BPETokenizer._trained(tok, TEXTS, 40, ["<unk>"], list("abcdefghijklmnopqrstuvwxyz"))


def test_specials_come_first_and_encoding_adds_none() -> None:
    tok = _trained()
    assert tok.tokenizer.token_to_id("<unk>") == 0
    assert tok.encode_batch(TEXTS[:2]) == [tok.encode(TEXTS[0]), tok.encode(TEXTS[1])]
    assert 0 not in tok.encode(TEXTS[0])
    assert tok.vocab_size <= 40


def test_no_texts_is_refused() -> None:
    with pytest.raises(ValueError, match="no texts"):
        BPETokenizer._trained(Tokenizer(models.BPE()), [], 40, [], [])


def test_save_load_round_trip_and_an_oversized_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = _trained()
    tok.save(tmp_path / "tok.json")
    assert BPETokenizer.load(tmp_path / "tok.json").to_str() == tok.to_str()
    monkeypatch.setattr(bpe, "MAX_VOCABULARY_BYTES", 16)
    with pytest.raises(DataFileError):
        BPETokenizer.load(tmp_path / "tok.json")
