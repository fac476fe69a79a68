"""Shared BPE vocabulary: lossless round trip on real verses, fixed special ids, cache, determinism."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models

from growprune.data import bible
from growprune.tasks.translation.subword import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    SubwordTokenizer,
    cache_key,
    train_or_load,
)

VOCAB = 500

pytestmark = pytest.mark.skipif(
    shutil.which("diatheke") is None, reason=f"diatheke not installed ({bible.INSTALL_HINT})"
)

# Not in either Bible (they spell numbers out), but in any other text the model might see.
EXTRA = [
    "En 1909, “¿Qué?” dijo él — 3 veces ‘sí’.",
    "He said, “It’s 42, isn’t it?” (Acts 27:37) ÁÉÍÓÚÑÜ áéíóúñü ¡Oh!",
]


def _verses(language: str, key: str) -> list[str]:
    """A few books straight from diatheke: quicker than the whole Bible and enough text here."""
    out = subprocess.run(
        ["diatheke", "-b", bible.MODULES[language], "-k", key], capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8")
    return [t for t in bible.parse_diatheke(out).values() if t]


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    """Training texts (Matthew, Mark, both languages) and unseen ones (Luke, John)."""
    seen = _verses("es", "Matthew-Mark") + _verses("en", "Matthew-Mark")
    unseen = _verses("es", "Luke-John") + _verses("en", "Luke-John")
    return {"train": seen, "unseen": unseen}


@pytest.fixture(scope="module")
def tok(texts: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> SubwordTokenizer:
    return train_or_load(texts["train"], VOCAB, tmp_path_factory.mktemp("subword"))


def test_round_trip_is_lossless_on_real_and_unseen_verses(
    tok: SubwordTokenizer, texts: dict[str, list[str]]
) -> None:
    samples = texts["train"] + texts["unseen"] + EXTRA
    assert any("“" in t and "’" in t for t in samples) and any("ñ" in t or "á" in t for t in samples)
    failures = [t for t in samples if tok.decode(tok.encode(t)) != t]
    assert failures == []
    assert all(UNK not in ids for ids in tok.encode_batch(samples))


def test_special_ids_are_fixed_and_never_produced_by_encode(tok: SubwordTokenizer) -> None:
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert [tok.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD, BOS, EOS, UNK]
    assert tok.vocab_size == VOCAB
    ids = tok.encode("Porque de tal manera amó Dios al mundo.")
    assert ids and min(ids) > UNK
    assert tok.encode_batch(["Porque de tal manera amó Dios al mundo."]) == [ids]


def test_decode_skips_specials_and_stops_at_eos(tok: SubwordTokenizer) -> None:
    ids = tok.encode("Jesus wept.")
    other = tok.encode("and more words")
    assert tok.decode([BOS, *ids, EOS, *other, PAD, PAD]) == "Jesus wept."
    assert tok.decode([BOS, *ids[:1], UNK, *ids[1:]]) == "Jesus wept."
    assert tok.decode([]) == "" and tok.decode([BOS, EOS]) == ""


def test_save_load_round_trip_and_special_check(tok: SubwordTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path / "tok.json")
    again = SubwordTokenizer.load(tmp_path / "tok.json")
    assert again.to_str() == tok.to_str()
    foreign = Tokenizer(models.BPE(vocab={"a": 0, "<pad>": 1}, merges=[]))
    with pytest.raises(ValueError, match="<pad> to id 1, expected 0"):
        SubwordTokenizer(foreign)


def test_cache_is_reused_and_keyed_by_texts_and_size(
    texts: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = texts["train"][:400]
    first = train_or_load(small, 300, tmp_path)
    (path,) = tmp_path.glob("bpe-300-*.json")
    assert cache_key(small, 300)[:20] in path.name

    def no_training(*args: object, **kwargs: object) -> SubwordTokenizer:
        raise AssertionError("a cached vocabulary must not be retrained")

    monkeypatch.setattr(SubwordTokenizer, "train", no_training)
    assert train_or_load(small, 300, tmp_path).to_str() == first.to_str()
    monkeypatch.undo()

    train_or_load(small[:-1], 300, tmp_path)  # one sentence fewer: a new vocabulary
    train_or_load(small, 320, tmp_path)  # another size: a new vocabulary
    assert len(list(tmp_path.glob("bpe-*.json"))) == 3
    # Moving text between sentences changes the key even though the characters are the same.
    assert cache_key(["ab", "c"], 300) != cache_key(["a", "bc"], 300)

    path.write_text("{broken", encoding="utf-8")
    assert train_or_load(small, 300, tmp_path).to_str() == first.to_str()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_training_is_deterministic_in_and_across_processes(
    texts: dict[str, list[str]], tmp_path: Path
) -> None:
    small = texts["train"][:1500]
    a = SubwordTokenizer.train(small, VOCAB).to_str()
    b = SubwordTokenizer.train(small, VOCAB).to_str()
    assert a == b
    # A fresh interpreter with the Rust thread pool enabled must agree too.
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(small), encoding="utf-8")
    script = (
        "import sys; from growprune.tasks.translation.subword import SubwordTokenizer; "
        "texts = open(sys.argv[1], encoding='utf-8').read().split('\\n'); "
        f"sys.stdout.write(SubwordTokenizer.train(texts, {VOCAB}).to_str())"
    )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(corpus)], capture_output=True, check=True, env=env, timeout=120
    )
    assert out.stdout.decode("utf-8") == a


def test_train_rejects_unusable_arguments() -> None:
    with pytest.raises(ValueError, match="exceed the 4 special tokens"):
        SubwordTokenizer.train(["a b"], 4)
    with pytest.raises(ValueError, match="no texts"):
        SubwordTokenizer.train([], 100)
