"""Translation tensors and TranslationLoader: reproducible, resumable, trimmed, low-padding batches."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from growprune.data import bible
from growprune.tasks.translation.corpus import (
    TranslationData,
    TranslationLoader,
    TranslationSplit,
    load_bible_translation,
    parse_direction,
)
from growprune.tasks.translation.subword import BOS, EOS, PAD, cache_key

needs_bible = pytest.mark.skipif(
    shutil.which("diatheke") is None, reason=f"diatheke not installed ({bible.INSTALL_HINT})"
)


def make_split(n: int = 1000, seed: int = 0) -> TranslationSplit:
    """Random ids with lengths spread like verses: 3..60 source tokens and a target length that
    follows the source's, as a translation's does."""
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(3, 61, (n,), generator=g)
    tgt_len = (src_len + torch.randint(-5, 6, (n,), generator=g)).clamp(min=1).tolist()
    src_len = src_len.tolist()
    src = [torch.randint(4, 100, (k,), generator=g).tolist() for k in src_len]
    tgt = [torch.randint(4, 100, (k,), generator=g).tolist() for k in tgt_len]
    names = [f"s{i}" for i in range(n)]
    return TranslationSplit.from_ids(src, tgt, names, [f"t{i}" for i in range(n)], names)


def as_lists(batches) -> list[tuple[list, list]]:
    return [(s.tolist(), t.tolist()) for s, t in batches]


def padding_fraction(loader: TranslationLoader, epoch: int = 0) -> float:
    real = total = 0
    for src, tgt in loader.iter_from(epoch):
        real += int((src != PAD).sum() + (tgt != PAD).sum())
        total += src.numel() + tgt.numel()
    return 1 - real / total


# --- TranslationSplit ----------------------------------------------------------------------------


def test_split_tensors_are_framed_and_padded() -> None:
    split = TranslationSplit.from_ids([[5, 6, 7], [8]], [[9], [10, 11]], ["a", "b"], ["A", "B"], ["r1", "r2"])
    assert split.src.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert split.tgt.tolist() == [[BOS, 9, EOS, PAD], [BOS, 10, 11, EOS]]
    assert split.src_lengths.tolist() == [3, 1] and split.tgt_lengths.tolist() == [3, 4]
    assert split.src.dtype == split.tgt.dtype == torch.int64
    first = split.subset(1)
    assert len(first) == 1 and first.src.tolist() == [[5, 6, 7]] and first.tgt.tolist() == [[BOS, 9, EOS]]
    assert first.refs == ["r1"] and len(split.subset(10)) == 2
    assert split.to("cpu").src.device.type == "cpu"
    with pytest.raises(ValueError, match="disagree on the item count"):
        TranslationSplit(
            split.src, split.tgt, split.src_lengths, split.tgt_lengths, ["a"], ["A", "B"], ["r1", "r2"]
        )


def test_parse_direction() -> None:
    assert parse_direction("es-en") == ("es", "en") and parse_direction("en-es") == ("en", "es")
    for bad in ("es-es", "fr-en", "es", "es-en-fr"):
        with pytest.raises(ValueError, match="use one of en-es, es-en"):
            parse_direction(bad)


# --- TranslationLoader ---------------------------------------------------------------------------


@pytest.mark.parametrize("drop_last", [False, True])
def test_length_is_constant_and_every_item_is_visited_once(drop_last: bool) -> None:
    split = make_split(1000)
    loader = TranslationLoader(split, 64, shuffle=True, drop_last=drop_last, seed=3)
    expected = 1000 // 64 if drop_last else math.ceil(1000 / 64)
    assert len(loader) == expected and loader.batch_size == 64
    for epoch in range(4):
        plan = loader.batch_indices(epoch)
        assert len(plan) == expected == sum(1 for _ in loader.iter_from(epoch))
        seen = torch.cat(plan)
        assert len(set(seen.tolist())) == len(seen)
        if drop_last:
            assert all(len(b) == 64 for b in plan)
        else:
            assert sorted(seen.tolist()) == list(range(1000))


def test_shuffle_is_a_pure_function_of_seed_and_epoch() -> None:
    split = make_split(700)
    a = TranslationLoader(split, 32, shuffle=True, seed=5)
    b = TranslationLoader(split, 32, shuffle=True, seed=5)
    list(b.iter_from(4))  # a different epoch visited first must not matter
    assert as_lists(a.iter_from(2)) == as_lists(b.iter_from(2))
    assert [p.tolist() for p in a.batch_indices(1)] != [p.tolist() for p in a.batch_indices(2)]
    other_seed = TranslationLoader(split, 32, shuffle=True, seed=6)
    assert [p.tolist() for p in a.batch_indices(2)] != [p.tolist() for p in other_seed.batch_indices(2)]
    a.set_epoch(2)
    assert as_lists(a) == as_lists(b.iter_from(2))


def test_resume_equals_skipping_batches() -> None:
    loader = TranslationLoader(make_split(500), 16, shuffle=True, drop_last=True, seed=1)
    full = as_lists(loader.iter_from(3))
    for start in (0, 1, 7, len(loader) - 1, len(loader)):
        fresh = TranslationLoader(loader.split, 16, shuffle=True, drop_last=True, seed=1)
        assert as_lists(fresh.iter_from(3, start)) == full[start:]
    assert as_lists([loader.batch(3, 5)]) == [full[5]]
    with pytest.raises(ValueError, match="start_batch"):
        loader.iter_from(3, len(loader) + 1)
    with pytest.raises(ValueError, match="epoch"):
        loader.iter_from(-1)
    with pytest.raises(IndexError):
        loader.batch(3, len(loader))


def test_batches_are_trimmed_rows_of_the_split() -> None:
    split = make_split(400)
    loader = TranslationLoader(split, 24, shuffle=True, seed=2)
    for idx, src, tgt in loader.iter_with_indices(1):
        assert (src[:, -1] != PAD).any() and (tgt[:, -1] != PAD).any()  # no all-pad column
        assert src.shape[1] == int(split.src_lengths[idx].max())
        assert torch.equal(src, split.src[idx, : src.shape[1]])
        assert torch.equal(tgt, split.tgt[idx, : tgt.shape[1]])
        assert (tgt[:, 0] == BOS).all() and src.is_contiguous() and tgt.is_contiguous()


def test_sortish_batching_cuts_padding() -> None:
    split = make_split(2000)
    sortish = padding_fraction(TranslationLoader(split, 32, shuffle=True, seed=0))
    # Chunks of one batch: sorting inside a batch changes nothing, i.e. plain random batches.
    random = padding_fraction(TranslationLoader(split, 32, shuffle=True, seed=0, chunk_batches=1))
    assert random > 0.3 and sortish < random / 2


def test_unshuffled_order_is_longest_first_and_recoverable() -> None:
    split = make_split(300)
    loader = TranslationLoader(split, 50)
    seen: list[int] = []
    lengths: list[int] = []
    for idx, src, _ in loader.iter_with_indices():
        seen += idx.tolist()
        lengths += split.src_lengths[idx].tolist()
        assert torch.equal(src, split.src[idx, : src.shape[1]])
    assert sorted(seen) == list(range(300))
    assert lengths == sorted(lengths, reverse=True)
    assert as_lists(loader.iter_from(0)) == as_lists(loader.iter_from(9))  # epoch-independent
    assert len(TranslationLoader(split, 50, drop_last=True)) == 6


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_live_on_the_split_device() -> None:
    split = make_split(200)
    on_gpu = TranslationLoader(split.to("cuda"), 32, shuffle=True, seed=4)
    on_cpu = TranslationLoader(split, 32, shuffle=True, seed=4)
    for (gs, gt), (cs, ct) in zip(on_gpu.iter_from(1), on_cpu.iter_from(1)):
        assert gs.is_cuda and gt.is_cuda
        assert torch.equal(gs.cpu(), cs) and torch.equal(gt.cpu(), ct)


def test_loader_rejects_bad_arguments() -> None:
    split = make_split(10)
    for kwargs in ({"batch_size": 0}, {"batch_size": 4, "seed": -1}, {"batch_size": 4, "chunk_batches": 0}):
        with pytest.raises(ValueError):
            TranslationLoader(split, **kwargs)


# --- the real task -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session-wide cache of tests/tasks/translation/test_bible.py, so the Bible is read only once."""
    return tmp_path_factory.getbasetemp() / "growprune-cache"


@pytest.fixture(scope="module")
def data(cache: Path) -> TranslationData:
    return load_bible_translation("es-en", vocab_size=500, max_tokens=48, cache_dir=str(cache))


@needs_bible
def test_bible_translation_tensors_and_stats(data: TranslationData, cache: Path) -> None:
    stats = data.stats
    assert data.direction == "es-en" and stats["vocab_size"] == data.tokenizer.vocab_size == 500
    assert stats["pairs"] == {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)}
    assert stats["dropped"]["train_too_long"] > 0 and stats["truncated_sources"]["test"] > 0
    # Too-long training pairs are gone; valid/test keep every pair, with the source cut.
    assert int(data.train.src_lengths.max()) <= 48 and int(data.train.tgt_lengths.max()) <= 48 + 2
    assert int(data.test.src_lengths.max()) == 48 and int(data.test.tgt_lengths.max()) > 48 + 2
    corpus = bible.load_parallel_corpus("es", "en", cache)
    assert len(data.train) + stats["dropped"]["train_too_long"] == len(corpus["train"])
    assert data.test.references == [p.target for p in corpus["test"]]
    assert data.valid.sources == [p.source for p in corpus["valid"]]
    assert data.test.refs[0] == "Ruth 1:1" and data.test.sources[0].startswith("Y ACONTECIÓ")
    # Decoding a framed target gives back its reference exactly.
    for i in (0, 17, len(data.valid) - 1):
        assert data.tokenizer.decode(data.valid.tgt[i].tolist()) == data.valid.references[i]


@needs_bible
def test_vocabulary_comes_from_the_training_books_and_serves_both_directions(
    data: TranslationData, cache: Path
) -> None:
    train = bible.load_parallel_corpus("es", "en", cache)["train"]
    texts = [p.target for p in train] + [p.source for p in train]  # languages in sorted order: en, es
    (path,) = (cache / "subword").glob(f"bpe-500-{cache_key(texts, 500)[:20]}.json")
    assert path.read_text(encoding="utf-8") == data.tokenizer.to_str()
    reverse = load_bible_translation("en-es", vocab_size=500, max_tokens=48, cache_dir=str(cache))
    assert reverse.tokenizer.to_str() == data.tokenizer.to_str()
    assert reverse.test.references == data.test.sources and reverse.test.sources == data.test.references
