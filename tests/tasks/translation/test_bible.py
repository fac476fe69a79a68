"""Bible corpus: OSIS cleaning, diatheke parsing, alignment filters, book splits, caching, errors.

The real-corpus tests read the installed SWORD modules once per pytest session into a temporary
cache shared by the data test files (``<basetemp>/growprune-cache``), never into ~/.cache.
"""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import pytest

from growprune.data import bible
from growprune.data.errors import DatasetNotFoundError

HAVE_DIATHEKE = shutil.which("diatheke") is not None
needs_bible = pytest.mark.skipif(not HAVE_DIATHEKE, reason=f"diatheke not installed ({bible.INSTALL_HINT})")
Aligned = tuple[list[bible.VersePair], dict[str, int]]


@pytest.fixture(scope="session")
def bible_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the first user pays for diatheke, the others read the files."""
    return tmp_path_factory.getbasetemp() / "growprune-cache"


@pytest.fixture(scope="session")
def aligned(bible_cache: Path) -> Aligned:
    if not HAVE_DIATHEKE:
        pytest.skip(f"diatheke not installed ({bible.INSTALL_HINT})")
    return bible.load_aligned("es", "en", bible_cache)


@pytest.fixture(scope="session")
def by_ref(aligned: Aligned) -> dict[str, bible.VersePair]:
    return {p.ref: p for p in aligned[0]}


# --- clean_osis ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ('<w savlm="strong:H0430">God</w><w savlm="strong:H1254">created</w> the', "God created the"),
        ('only born</q><q marker=""><w savlm="strong:G5207">Son</w>', "only born Son"),
        (
            'hay allí</w><transChange type="added">también</transChange><w s="x">bdelio</w>',
            "hay allí también bdelio",
        ),
        ('Yahweh<w savlm="strong:H6963">will</w> command', "Yahweh will command"),
        ('righteousness.”</q><w savlm="x">Then</w> he', "righteousness.” Then he"),
        ('stater coin.</q><q marker=""><w savlm="x">Take</w>', "stater coin. Take"),
        ('la mujer</w>: ¿<w lemma="H3588">Conque</w> Dios', "la mujer: ¿Conque Dios"),
        ('y Beth-baal</w>-<w savlm="x">meón</w>;', "y Beth-baal-meón;"),
        ('said, “<w savlm="x">Let</w> there', "said, “Let there"),
        ('AM</w>.</q><q marker="">”</q><div eID="gen1" type="x-p"/>', "AM.”"),
    ],
)
def test_clean_osis_separates_glued_words_but_not_punctuation(fragment: str, expected: str) -> None:
    assert bible.clean_osis(fragment) == expected


def test_clean_osis_drops_titles_notes_speakers_and_back_matter() -> None:
    text = (
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="g1"/> <l level="1"/>'
        'Yahweh, how<note type="study">a note</note> <speaker>Lover</speaker> many!'
        ' <div sID="g9" type="glossary"/> Abba: Father. <div eID="g9" type="glossary"/>'
    )
    assert bible.clean_osis(text) == "Yahweh, how many!"


def test_clean_osis_unescapes_after_removing_tags_and_normalizes() -> None:
    assert bible.clean_osis("a &amp; b &lt;w&gt; c") == "a & b <w> c"
    decomposed = "creo\u0301  \n  en   Dios "
    out = bible.clean_osis(decomposed)
    assert out == "creó en Dios"
    assert unicodedata.is_normalized("NFC", out)


# --- parse_diatheke ------------------------------------------------------------------------------

# The shape of diatheke's English output around Psalms 3 (headings leak onto later lines).
SAMPLE = "\n".join(
    [
        'Genesis 1:1: <w savlm="strong:H0430">In</w> <w>the</w> <w>beginning</w>, <w>God</w><w>created</w>.',
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="gen7860"/> '
        '<l level="1" sID="gen7861"/>Psalms 3:1: Yahweh, how <w savlm="strong:H1732">my</w> foes!',
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="gen7860"/> '
        '<l level="1" sID="gen7861"/>Psalms 3:2: Many say of my soul.',
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="gen7860"/> '
        '<l level="1" sID="gen7861"/>Song of Solomon 1:1: The Song of songs.',
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="gen7860"/> '
        '<l level="1" sID="gen7861"/>I Samuel 2:3: Don\'t talk.',
        "Revelation of John 22:21: Amen.",
        "Esther (Greek) 1:1: In the second year.",
        "",
        "(engWEB2015eb)",
    ]
)


def test_parse_diatheke_strips_stale_prefixes_and_keeps_fresh_psalm_headings() -> None:
    verses = bible.parse_diatheke(SAMPLE)
    assert list(verses) == [
        ("Genesis", 1, 1),
        ("Psalms", 3, 1),
        ("Psalms", 3, 2),
        ("Song of Solomon", 1, 1),
        ("I Samuel", 2, 3),
        ("Revelation of John", 22, 21),
        ("Esther (Greek)", 1, 1),
    ]
    assert verses[("Genesis", 1, 1)] == "In the beginning, God created."
    assert verses[("Psalms", 3, 1)] == "A Psalm by David. Yahweh, how my foes!"
    assert verses[("Psalms", 3, 2)] == "Many say of my soul."
    assert verses[("Song of Solomon", 1, 1)] == "The Song of songs."
    assert bible.books_in_order(verses)[:3] == ["Genesis", "Psalms", "Song of Solomon"]


# --- align / misaligned_chapters -----------------------------------------------------------------


def _verses(rows: list[tuple[str, int, int, str]]) -> dict[bible.VerseKey, str]:
    return {(b, c, v): t for b, c, v, t in rows}


def test_align_counts_every_drop_reason() -> None:
    ok = "a sentence of ordinary length"
    source = _verses(
        [
            ("Genesis", 1, 1, ok),
            ("Genesis", 1, 2, ""),  # empty on one side, not the chapter's last verse
            ("Genesis", 1, 3, ok * 3),  # three times longer than its translation
            ("Genesis", 1, 4, ok),
            ("Genesis", 1, 5, ok),
            ("Exodus", 1, 1, ok),  # missing on the target side
        ]
    )
    target = _verses([(b, c, v, ok) for b, c, v in source if b == "Genesis"] + [("Tobit", 1, 1, ok)])
    pairs, dropped = bible.align(source, target)
    assert [p.ref for p in pairs] == ["Genesis 1:1", "Genesis 1:4", "Genesis 1:5"]
    assert dropped == {
        "source_only": 1,
        "target_only": 1,
        "short": 1,
        "misaligned_chapter": 0,
        "length_ratio": 1,
    }


def test_empty_last_verse_flags_its_chapter_and_the_next() -> None:
    text = "words words words words"
    keys = [("Jonah", 1, v) for v in range(1, 6)] + [("Jonah", 2, v) for v in range(1, 6)]
    source = {k: text for k in keys} | {("Jonah", 1, 5): ""}
    target = {k: text for k in keys}
    assert bible.misaligned_chapters(source, target) == {("Jonah", 1), ("Jonah", 2)}
    pairs, dropped = bible.align(source, target)
    assert pairs == [] and dropped["short"] == 1 and dropped["misaligned_chapter"] == 9


def test_misaligned_chapters_flags_a_chapter_of_length_mismatches() -> None:
    source = {("Hosea", 12, v): "x" * 100 for v in range(1, 10)}
    target = {("Hosea", 12, v): "y" * (140 if v % 2 else 70) for v in range(1, 10)}
    assert bible.misaligned_chapters(source, target) == {("Hosea", 12)}


# --- splits --------------------------------------------------------------------------------------


def test_split_rule_names_every_held_out_book() -> None:
    assert {bible.split_of_book(b) for b in bible.TEST_BOOKS} == {"test"}
    assert {bible.split_of_book(b) for b in bible.VALID_BOOKS} == {"valid"}
    assert sum(bible.split_of_book(b) == "train" for b in bible.BOOKS) == 57
    for book in (*bible.TEST_BOOKS, *bible.VALID_BOOKS):
        assert book in bible.SPLIT_RULE
    with pytest.raises(ValueError, match="not one of the 66 books"):
        bible.split_of_book("Tobit")


# --- real corpus ---------------------------------------------------------------------------------


@needs_bible
def test_known_verses_are_aligned(by_ref: dict[str, bible.VersePair]) -> None:
    john = by_ref["John 3:16"]
    assert john.source.startswith("Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito")
    assert john.target.startswith("For God so loved the world, that he gave his only born Son")
    genesis = by_ref["Genesis 1:1"]
    assert genesis.source == "EN el principio crió Dios los cielos y la tierra."
    assert genesis.target == "In the beginning, God created the heavens and the earth."
    # The heading is part of verse 1 in both modules once the English one is kept.
    psalm = by_ref["Psalms 3:1"]
    assert psalm.source.startswith("Salmo de David, cuando huía de delante de Absalom")
    assert psalm.target.startswith("A Psalm by David, when he fled from Absalom his son. Yahweh, how")
    assert by_ref["Revelation of John 22:21"].target == (
        "The grace of the Lord Jesus Christ be with all the saints. Amen."
    )


@needs_bible
def test_corpus_size_and_text_hygiene(aligned: Aligned) -> None:
    pairs, dropped = aligned
    assert 29_000 <= len(pairs) <= 31_103
    assert dropped["source_only"] == 0  # every Spanish verse number exists in the English module
    assert 6_000 <= dropped["target_only"] <= 7_000  # the deuterocanon, mostly
    assert 0 < dropped["misaligned_chapter"] + dropped["length_ratio"] + dropped["short"] < 1_000
    for p in pairs:
        for text in (p.source, p.target):
            assert "<" not in text and ">" not in text, p.ref
            assert text == text.strip() and "  " not in text, p.ref
            assert unicodedata.is_normalized("NFC", text), p.ref
        assert bible.MIN_LENGTH_RATIO <= len(p.source) / len(p.target) <= bible.MAX_LENGTH_RATIO


@needs_bible
def test_splits_are_whole_books_in_canonical_order(aligned: Aligned, bible_cache: Path) -> None:
    splits = bible.split_by_book(aligned[0])
    books = {name: {p.book for p in pairs} for name, pairs in splits.items()}
    assert books["test"] == set(bible.TEST_BOOKS)
    assert books["valid"] == set(bible.VALID_BOOKS)
    assert not books["train"] & (books["test"] | books["valid"])
    assert len(splits["train"]) > 25_000
    assert 1_000 < len(splits["test"]) < 2_500 and 500 < len(splits["valid"]) < 1_500
    order = bible.books_in_order((p.book, p.chapter, p.verse) for p in splits["train"])
    assert order == [b for b in bible.BOOKS if b in books["train"]]
    assert bible.load_parallel_corpus("es", "en", bible_cache) == splits


@needs_bible
def test_cached_corpus_needs_no_diatheke(
    aligned: Aligned, bible_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no diatheke reachable any more
    assert bible.load_aligned("es", "en", bible_cache) == aligned
    john = next(p for p in aligned[0] if p.ref == "John 3:16")
    assert bible.read_module("es", bible_cache)[("John", 3, 16)] == john.source


# --- pair cache, on a small fake module cache (no diatheke needed) --------------------------------


@pytest.fixture
def fake_cache(tmp_path: Path) -> Path:
    """Raw-text cache files as diatheke would have left them, for three verses."""
    rows = {
        "es": [
            "Genesis 1:1: <w>EN el principio</w> <w>crió</w>.",
            "John 3:16: Porque de tal manera.",
            "Jude 1:1: Judas, siervo.",
        ],
        "en": [
            "Genesis 1:1: <w>In</w> the <w>beginning</w>.",
            "John 3:16: For God so loved.",
            "Jude 1:1: Jude, servant.",
            "Tobit 1:1: Tobit.",
        ],
    }
    for lang, lines in rows.items():
        path = tmp_path / "bible" / f"{bible.MODULES[lang]}.osis.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([*lines, f"({bible.MODULES[lang]})", ""]), encoding="utf-8")
    return tmp_path


def test_pair_cache_is_used_then_rebuilt_when_damaged(
    fake_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = bible.load_aligned("es", "en", fake_cache)
    assert [p.ref for p in first[0]] == ["Genesis 1:1", "John 3:16", "Jude 1:1"]
    assert first[1]["target_only"] == 1
    (cached,) = (fake_cache / "bible").glob("pairs-es-en-*.json")

    def no_parsing(_: str) -> dict[bible.VerseKey, str]:
        raise AssertionError("a cache hit must not parse the modules")

    monkeypatch.setattr(bible, "parse_diatheke", no_parsing)
    assert bible.load_aligned("es", "en", fake_cache) == first
    monkeypatch.undo()
    cached.write_text("{not json", encoding="utf-8")
    assert bible.load_aligned("es", "en", fake_cache) == first
    assert [p.name for p in (fake_cache / "bible").iterdir() if p.name.startswith(".")] == []


def test_pair_cache_follows_the_raw_text_and_the_direction(fake_cache: Path) -> None:
    pairs, _ = bible.load_aligned("es", "en", fake_cache)
    mirror, dropped = bible.load_aligned("en", "es", fake_cache)
    assert [(p.ref, p.source, p.target) for p in mirror] == [(p.ref, p.target, p.source) for p in pairs]
    assert dropped["source_only"] == 1
    raw = fake_cache / "bible" / "engWEB2015eb.osis.txt"
    raw.write_text(
        raw.read_text(encoding="utf-8").replace("Jude, servant.", "Jude, a servant."), encoding="utf-8"
    )
    assert bible.load_aligned("es", "en", fake_cache)[0][-1].target == "Jude, a servant."
    assert len(list((fake_cache / "bible").glob("pairs-*.json"))) == 3


# --- errors and cache location -------------------------------------------------------------------


def test_missing_diatheke_names_module_and_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DatasetNotFoundError) as err:
        bible.read_module("es", tmp_path / "cache")
    message = str(err.value)
    assert "spaRV1909eb" in message and bible.INSTALL_HINT in message and "\n" not in message


@needs_bible
def test_missing_module_names_module_and_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(bible.MODULES, "es", "noSuchBibleModule")
    with pytest.raises(DatasetNotFoundError) as err:
        bible.load_parallel_corpus("es", "en", tmp_path / "cache")
    message = str(err.value)
    assert "noSuchBibleModule" in message and bible.INSTALL_HINT in message and "\n" not in message
    assert not (tmp_path / "cache" / "bible" / "noSuchBibleModule.osis.txt").exists()


def test_bad_languages_are_rejected_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="en, es"):
        bible.load_parallel_corpus("fr", "en", tmp_path)
    with pytest.raises(ValueError, match="both 'es'"):
        bible.load_parallel_corpus("es", "es", tmp_path)
    assert not any(tmp_path.iterdir())
