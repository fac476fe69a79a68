"""The lm corpus: byte-level BPE, the token stream, fixed-length blocks and the book split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from growprune.data import bible
from growprune.tasks.lm.corpus import blocks_of, load_bible_lm, token_stream
from growprune.tasks.lm.tokenizer import EOT, EOT_TOKEN, ByteBPE

HAVE_DIATHEKE = shutil.which("diatheke") is not None
needs_bible = pytest.mark.skipif(not HAVE_DIATHEKE, reason="needs diatheke and sword-text-web (make data)")

TEXTS = ["In the beginning, God created the heavens and the earth.", "Jesus wept.", "Ésaïe — «¿qué?»"] * 3


@pytest.fixture(scope="module")
def tokenizer() -> ByteBPE:
    return ByteBPE.train(TEXTS, vocab_size=300)


def test_byte_level_bpe_round_trips_any_text(tokenizer: ByteBPE) -> None:
    assert tokenizer.tokenizer.token_to_id(EOT_TOKEN) == EOT == 0
    assert tokenizer.vocab_size == 300
    for text in [*TEXTS, "never seen: 漢字 and emoji 🙂"]:  # bytes: nothing is unknown
        ids = tokenizer.encode(text)
        assert EOT not in ids
        assert tokenizer.decode(ids) == text
    # merges were learned: a frequent word costs fewer ids than its bytes
    assert len(tokenizer.encode("beginning")) < len("beginning")


def test_bpe_is_deterministic_and_refuses_a_vocabulary_below_the_bytes(tokenizer: ByteBPE) -> None:
    assert ByteBPE.train(TEXTS, vocab_size=300).to_str() == tokenizer.to_str()
    with pytest.raises(ValueError, match="256 bytes"):
        ByteBPE.train(TEXTS, vocab_size=257)


def test_stream_ends_every_verse_with_eot(tokenizer: ByteBPE) -> None:
    stream = token_stream(tokenizer, TEXTS[:2])
    first = tokenizer.encode(TEXTS[0])
    assert stream.tolist() == [*first, EOT, *tokenizer.encode(TEXTS[1]), EOT]
    assert tokenizer.decode(stream.tolist()) == f"{TEXTS[0]}\n{TEXTS[1]}\n"


@pytest.mark.parametrize(("length", "context"), [(1, 4), (5, 4), (9, 4), (10, 4), (17, 1)])
def test_blocks_predict_every_token_after_the_first_exactly_once(length: int, context: int) -> None:
    stream = torch.arange(length)
    blocks = blocks_of(stream, context)
    assert blocks.shape == ((length - 1) // context, context + 1)
    targets = blocks[:, 1:].reshape(-1).tolist()
    assert targets == list(range(1, 1 + len(targets)))  # each once, in order, none skipped
    assert length - 1 - len(targets) < context  # only a remainder shorter than a block is dropped
    for row in blocks:  # inputs are the tokens right before their targets
        assert torch.equal(row[1:] - row[:-1], torch.ones(context, dtype=torch.int64))
    with pytest.raises(ValueError, match="context_length"):
        blocks_of(stream, 0)


@needs_bible
def test_english_verses_are_split_by_whole_book() -> None:
    verses = bible.load_verses("en")
    books = {split: {ref.rsplit(" ", 1)[0] for ref, _ in rows} for split, rows in verses.items()}
    assert books["test"] == set(bible.TEST_BOOKS)
    assert books["valid"] == set(bible.VALID_BOOKS)
    assert books["train"] == set(bible.BOOKS) - set(bible.TEST_BOOKS) - set(bible.VALID_BOOKS)
    assert verses["train"][0][0] == "Genesis 1:1" and verses["train"][0][1].startswith("In the beginning")
    assert all(len(text) >= bible.MIN_CHARS for rows in verses.values() for _, text in rows)
    assert len(verses["train"]) > 25_000 and len(verses["valid"]) > 500 and len(verses["test"]) > 1000


@needs_bible
def test_bible_blocks_hold_the_held_out_books_and_load_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    raw = bible.read_raw("en")  # the shared default cache: diatheke runs once per machine
    (cache / "bible").mkdir(parents=True)
    (cache / "bible" / f"{bible.MODULES['en']}.osis.txt").write_text(raw, encoding="utf-8")
    data = load_bible_lm(vocab_size=512, context_length=32, cache_dir=str(cache))
    assert data.tokenizer.vocab_size == 512
    for name in ("train", "valid", "test"):
        blocks = getattr(data, name)
        assert blocks.shape[1] == 33 and blocks.dtype == torch.int64
        assert data.stats["blocks"][name] == len(blocks)
        assert 0 <= data.stats["dropped_tokens"][name] < 32
    verses = bible.load_verses("en", str(cache))
    for name in ("valid", "test"):  # the blocks put back together are the held-out books' verses
        blocks = getattr(data, name)
        stream = torch.cat([blocks[0], blocks[1:, 1:].reshape(-1)]).tolist()
        text = "".join(f"{verse}\n" for _, verse in verses[name])
        decoded = data.tokenizer.decode(stream)
        assert len(decoded) > 0.9 * len(text) and text.startswith(decoded[: len(decoded) - 20])
    assert verses["valid"][0][0] == "II Chronicles 1:1"
    # the vocabulary is the training verses': trained on them alone, it is the same
    assert ByteBPE.train([t for _, t in verses["train"]], 512).to_str() == data.tokenizer.to_str()
    cached = sorted(p.name for p in (cache / "lm").iterdir())
    assert [n.split("-")[0] for n in cached] == ["bpe", "ids"]
    again = load_bible_lm(vocab_size=512, context_length=32, cache_dir=str(cache))
    assert torch.equal(again.train, data.train) and again.tokenizer.to_str() == data.tokenizer.to_str()
    # a damaged id cache is rebuilt, not trusted
    ids = next(p for p in (cache / "lm").iterdir() if p.name.startswith("ids"))
    ids.write_bytes(b"not a tensor file")
    assert torch.equal(load_bible_lm(vocab_size=512, context_length=32, cache_dir=str(cache)).test, data.test)
