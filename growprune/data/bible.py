"""A verse-aligned Spanish-English parallel corpus from two locally installed Bibles, and the
verses of one language alone.

Shared by the translation task (aligned pairs) and the language-modelling task (the English
verses, :func:`load_verses`), which split by the same books; task folders do not import each
other, so the reader lives here.

Why the Bible: CI and the dev machines have no general internet access, so the translation task
needs a parallel corpus that an ordinary package manager installs. Debian ships SWORD modules
with the World English Bible (``sword-text-web``, module ``engWEB2015eb``) and the Reina-Valera
1909 (``sword-text-sparv``, module ``spaRV1909eb``); ``diatheke`` prints them verse by verse, and
a verse reference is a free sentence alignment.

Text is read from ``diatheke -b MODULE -k Gen-Rev`` (one ``Book C:V: text`` line per verse, with
OSIS markup), which is run once per module: its raw output is cached under
``<cache>/bible/<module>.osis.txt`` so later loads need neither diatheke nor the modules. The
cache root is the ``cache_dir`` argument, else ``$GROWPRUNE_CACHE``, else ``~/.cache/growprune``.
Delete the cached file after upgrading a module package.

Splits are by whole book (:data:`SPLIT_RULE`): verses of one book share names, refrains and
repeated formulas, so a random verse split would put near-copies of test sentences in training.
Parallel passages *across* books (Kings and Chronicles, the synoptic gospels) remain; the test
books were picked to have few of them.

Cleaning and alignment are documented at :func:`clean_osis`, :func:`parse_diatheke` and
:func:`align`; for es-en about 30.4k of the 31.1k shared verses survive.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import statistics
import subprocess
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from growprune.bounded import DataFileError, read_json, read_text
from growprune.data.cache import cache_root
from growprune.data.errors import DatasetNotFoundError
from growprune.files import atomic_write_text

__all__ = [
    "BOOKS",
    "CORPUS_VERSION",
    "INSTALL_HINT",
    "LANGUAGES",
    "MAX_CHAPTER_MEDIAN_LOG_RATIO",
    "MAX_LENGTH_RATIO",
    "MIN_CHARS",
    "MIN_LENGTH_RATIO",
    "MODULES",
    "SPLIT_RULE",
    "TEST_BOOKS",
    "VALID_BOOKS",
    "ChapterKey",
    "VerseKey",
    "VersePair",
    "align",
    "atomic_write_text",
    "books_in_order",
    "clean_osis",
    "load_aligned",
    "load_parallel_corpus",
    "load_verses",
    "misaligned_chapters",
    "parse_diatheke",
    "read_module",
    "read_raw",
    "split_by_book",
    "split_of_book",
]

MODULES: dict[str, str] = {"en": "engWEB2015eb", "es": "spaRV1909eb"}
LANGUAGES: tuple[str, ...] = tuple(MODULES)
INSTALL_HINT = "apt-get install diatheke sword-text-web sword-text-sparv"
DIATHEKE_TIMEOUT_S = 300.0
# Bump whenever clean_osis, parse_diatheke or align change their output: cached pairs are keyed
# by it.
CORPUS_VERSION = 1

# The 66 books of the Protestant canon, spelled as diatheke prints them, in canonical order.
# The English module also has the deuterocanon (between Malachi and Matthew); the Spanish one
# does not, so those verses never align.
BOOKS: tuple[str, ...] = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "I Samuel", "II Samuel", "I Kings", "II Kings", "I Chronicles", "II Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah",
    "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "I Corinthians", "II Corinthians",
    "Galatians", "Ephesians", "Philippians", "Colossians", "I Thessalonians", "II Thessalonians",
    "I Timothy", "II Timothy", "Titus", "Philemon", "Hebrews", "James", "I Peter", "II Peter",
    "I John", "II John", "III John", "Jude", "Revelation of John",
)  # fmt: skip
_BOOK_SET = frozenset(BOOKS)

# Whole-book split, by name rather than by arithmetic on book indices so the rule can be quoted
# and checked at a glance. The held-out books spread over the canon (law-era narrative, wisdom
# poetry, apocalyptic prophecy, a minor prophet, a long and a one-chapter epistle) and are small
# (~6% and ~3% of the pairs), leaving the bulk of each genre in training.
TEST_BOOKS: tuple[str, ...] = ("Ruth", "Job", "Daniel", "Haggai", "II Corinthians", "Philemon")
VALID_BOOKS: tuple[str, ...] = ("II Chronicles", "Micah", "II Thessalonians")
SPLIT_RULE = (
    f"Whole books: test = {', '.join(TEST_BOOKS)}; valid = {', '.join(VALID_BOOKS)}; "
    "train = the other 57 books of the 66-book Protestant canon."
)

# Alignment filters, chosen by looking at the corpus (see align() for what each one catches).
# Verse level: len(es)/len(en) has median 0.96 and 99.8% of pairs lie within [0.5, 2]; outside
# it, one side is not a translation of the other (one module split or merged verses there).
MIN_CHARS = 2
MIN_LENGTH_RATIO = 0.5
MAX_LENGTH_RATIO = 2.0
# Chapter level: the median |log(len(es)/len(en))| of a chapter is ~0.09 for a typical chapter
# and below 0.22 for all but eight; those eight (Numbers 13 and 30, I Samuel 24, I Chronicles 21,
# II Chronicles 33, Job 39, Hosea 12, Jonah 2) are chapters whose verse numbers are shifted by
# one or more verses between the two modules.
MAX_CHAPTER_MEDIAN_LOG_RATIO = math.log(1.25)

VerseKey = tuple[str, int, int]
ChapterKey = tuple[str, int]

# --- OSIS cleaning -------------------------------------------------------------------------------

# Elements dropped together with their content: headings, notes, speaker labels ("Lover" in the
# Song of Solomon) are not part of the verse's sentence.
_DROP_ELEMENTS = re.compile(r"<(title|note|speaker)\b[^>]*(?<!/)>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
# Book-level matter (the WEB glossary is printed inside Revelation 22:21): cut from its start.
_BACK_MATTER = re.compile(
    r"<div\b[^>]*\btype=\"(?:glossary|introduction|preface|colophon|appendix|back|front)\".*",
    re.DOTALL,
)
# Each run of tags becomes a sentinel; a sentinel between a word-ending and a word-starting
# character then becomes a space: tags between ``.”`` and ``Then`` separate words, tags between
# ``Beth-baal`` and ``-meón`` or between ``¿`` and ``Conque`` do not. (Two plain passes are ~2x
# faster than deciding per tag run in a Python callback; the English module has ~700k runs.)
_TAG_RUN = re.compile(r"(?:<[^>]*>)+")
_SENTINEL = "\x00"
_WORD_BREAK = re.compile(r"(?<=[^\W_]|[.,;:!?)\]}»”’])\x00(?=[^\W_]|[(\[{«“‘¿¡])")
_SPACE = re.compile(r"\s+")


def clean_osis(fragment: str) -> str:
    """Plain text of an OSIS fragment.

    The modules glue word elements (``<w>God</w><w>created</w>``) and quotation milestones
    (``born</q><q marker=""><w>Son``) with no space, so a run of tags that sits between a
    word-ending and a word-starting character becomes one space; any other tag vanishes.
    ``<title>``, ``<note>`` and ``<speaker>`` are dropped with their content, ``<transChange>``
    (words the translators added) keeps its content. Entities are unescaped after the tags are
    gone, so an escaped ``&lt;`` cannot turn into markup. Whitespace is collapsed and the result
    NFC-normalized, so the same text always has the same code points.
    """
    text = _BACK_MATTER.sub("", fragment)
    text = _DROP_ELEMENTS.sub(" ", text)
    text = text.replace(_SENTINEL, " ")  # cannot occur in real text; keep it from meaning "tag"
    text = _TAG_RUN.sub(_SENTINEL, text)
    text = _WORD_BREAK.sub(" ", text).replace(_SENTINEL, "")
    text = html.unescape(text)
    text = _SPACE.sub(" ", text).strip()
    return unicodedata.normalize("NFC", text)


# --- diatheke output -----------------------------------------------------------------------------

# From Psalms 3 on, the English module's lines start with the last psalm heading and poetry
# milestones seen so far, then the reference; book names have spaces, roman numerals and, in
# the deuterocanon, parentheses ("Esther (Greek)").
_VERSE_LINE = re.compile(
    r"^(?P<prefix>(?:\s+|<title\b[^>]*>.*?</title\s*>|<[^>]*>)*)"
    r"(?P<book>[A-Z][A-Za-z ()]*?) (?P<chapter>\d+):(?P<verse>\d+): ?(?P<body>.*)$",
    re.DOTALL,
)
_PSALM_TITLE = re.compile(r"<title\b[^>]*type=\"psalm\"[^>]*>(.*?)</title\s*>", re.DOTALL)


def parse_diatheke(output: str) -> dict[VerseKey, str]:
    """``(book, chapter, verse) -> cleaned text`` in the order diatheke printed (canonical order).

    Lines that are not verses (the ``(module)`` trailer, blank lines) are skipped. A psalm heading
    is kept as the start of verse 1 when it is new on that line: the Spanish module carries the
    heading inside verse 1's text, so dropping it on the English side only would misalign those
    pairs. The stale copies of the heading on the following lines are dropped.
    """
    verses: dict[VerseKey, str] = {}
    previous_prefix = ""
    for line in output.splitlines():
        m = _VERSE_LINE.match(line)
        if m is None:
            continue
        prefix = m["prefix"]
        key = (m["book"], int(m["chapter"]), int(m["verse"]))
        body = m["body"]
        if key[0] == "Psalms" and key[2] == 1 and prefix != previous_prefix:
            heading = _PSALM_TITLE.search(prefix)
            if heading is not None:
                body = f"{heading.group(1)} {body}"
        previous_prefix = prefix
        verses[key] = clean_osis(body)
    return verses


def books_in_order(verses: Iterable[VerseKey]) -> list[str]:
    """Distinct book names in first-seen order (the canonical order for parsed output)."""
    return list(dict.fromkeys(book for book, _, _ in verses))


# --- cache ---------------------------------------------------------------------------------------


def _module_for(language: str) -> str:
    if language not in MODULES:
        raise ValueError(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")
    return MODULES[language]


def _not_found(module: str, why: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"Bible module {module} {why}; install it with `{INSTALL_HINT}`")


def _run_diatheke(module: str) -> str:
    try:
        proc = subprocess.run(
            ["diatheke", "-b", module, "-k", "Gen-Rev"],
            capture_output=True,
            timeout=DIATHEKE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_found(module, "cannot be read because `diatheke` is not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise _not_found(module, f"was not printed by diatheke within {DIATHEKE_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise _not_found(module, f"could not be printed (diatheke exit status {proc.returncode})")
    return proc.stdout.decode("utf-8", errors="replace")


def _looks_like_module(raw: str) -> bool:
    """Whether ``raw`` is diatheke output with verses: one of its first lines is a verse line.

    (The ``(module)`` trailer is last; a blank or foreign file has no verse line at all.)
    """
    return any(_VERSE_LINE.match(line) for line in raw.splitlines()[:5])


_MAX_CACHE_BYTES = 256 << 20  # the cached module texts and pairs are ~5-10 MB each


def read_raw(language: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """diatheke's raw output for one language's module, from the cache or printed once and cached.

    Raises :class:`DatasetNotFoundError` when diatheke is missing or prints no verses (what it
    does, with exit status 0, for a module that is not installed).
    """
    module = _module_for(language)
    path = cache_root(cache_dir) / "bible" / f"{module}.osis.txt"
    if path.is_file():
        try:  # bounded: a module prints ~5 MB; a foreign file is not read whole
            raw = read_text(path, max_bytes=_MAX_CACHE_BYTES, errors="replace")
        except DataFileError:
            raw = ""
        if _looks_like_module(raw):
            return raw
        # An empty, foreign or oversized file is not worth an error: print the module again.
    raw = _run_diatheke(module)
    if not _looks_like_module(raw):
        raise _not_found(module, "is not installed (diatheke printed no verses)")
    atomic_write_text(path, raw)
    return raw


def read_module(language: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[VerseKey, str]:
    """All verses of one language's module (see :func:`parse_diatheke` and :func:`read_raw`)."""
    return parse_diatheke(read_raw(language, cache_dir))


# --- alignment and splits ------------------------------------------------------------------------


@dataclass(frozen=True)
class VersePair:
    """One verse in both languages."""

    book: str
    chapter: int
    verse: int
    source: str
    target: str

    @property
    def ref(self) -> str:
        """Human-readable reference, e.g. ``John 3:16``."""
        return f"{self.book} {self.chapter}:{self.verse}"


def _abs_log_ratio(a: str, b: str) -> float:
    return abs(math.log(len(a) / len(b)))


def misaligned_chapters(source: Mapping[VerseKey, str], target: Mapping[VerseKey, str]) -> set[ChapterKey]:
    """Chapters whose verse numbers the two modules assign differently, as ``(book, chapter)``.

    Two signs, both needed because either alone misses shifted chapters:

    - the chapter's last shared verse is empty on exactly one side: that module moved the text
      into the previous verse or across the chapter boundary (Jonah 1:17 is Jonah 2:1 in the
      Spanish numbering), so this chapter and the next one of the book are flagged;
    - the chapter's median ``|log(len ratio)|`` exceeds :data:`MAX_CHAPTER_MEDIAN_LOG_RATIO`.

    The per-verse length ratio cannot catch a shift on its own: neighbouring verses often have
    similar lengths, so most shifted pairs would pass it.
    """
    chapters: dict[ChapterKey, list[VerseKey]] = {}
    for key in source:
        if key in target:
            chapters.setdefault((key[0], key[1]), []).append(key)
    flagged: set[ChapterKey] = set()
    for chapter, keys in chapters.items():
        last = max(keys, key=lambda k: k[2])
        if (len(source[last]) < MIN_CHARS) != (len(target[last]) < MIN_CHARS):
            flagged.update({chapter, (chapter[0], chapter[1] + 1)})
        ratios = [
            _abs_log_ratio(source[k], target[k])
            for k in keys
            if len(source[k]) >= MIN_CHARS and len(target[k]) >= MIN_CHARS
        ]
        if ratios and statistics.median(ratios) > MAX_CHAPTER_MEDIAN_LOG_RATIO:
            flagged.add(chapter)
    return flagged


def align(
    source: Mapping[VerseKey, str], target: Mapping[VerseKey, str]
) -> tuple[list[VersePair], dict[str, int]]:
    """Pair verses with the same reference, in ``source`` order, and drop unusable pairs.

    Returns the pairs and how many were dropped for each reason, each pair counted once under
    the first reason that applies:

    - ``source_only`` / ``target_only``: the reference exists in one module only (the English
      deuterocanon, a few verses the WEB numbers differently);
    - ``short``: either side has fewer than :data:`MIN_CHARS` characters, which is how a module
      marks a verse it omits or merged into its neighbour;
    - ``misaligned_chapter``: the verse is in a chapter from :func:`misaligned_chapters`;
    - ``length_ratio``: ``len(source) / len(target)`` is outside
      ``[MIN_LENGTH_RATIO, MAX_LENGTH_RATIO]`` (for es-en and en-es alike, as the range is
      symmetric in log space).
    """
    dropped = {"source_only": 0, "target_only": 0, "short": 0, "misaligned_chapter": 0, "length_ratio": 0}
    dropped["target_only"] = sum(1 for k in target if k not in source)
    bad_chapters = misaligned_chapters(source, target)
    pairs: list[VersePair] = []
    for key, src in source.items():
        tgt = target.get(key)
        if tgt is None:
            dropped["source_only"] += 1
        elif len(src) < MIN_CHARS or len(tgt) < MIN_CHARS:
            dropped["short"] += 1
        elif (key[0], key[1]) in bad_chapters:
            dropped["misaligned_chapter"] += 1
        elif not MIN_LENGTH_RATIO <= len(src) / len(tgt) <= MAX_LENGTH_RATIO:
            dropped["length_ratio"] += 1
        else:
            pairs.append(VersePair(key[0], key[1], key[2], src, tgt))
    return pairs, dropped


def split_of_book(book: str) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` for one of :data:`BOOKS` (see :data:`SPLIT_RULE`)."""
    if book not in _BOOK_SET:
        raise ValueError(f"{book!r} is not one of the 66 books in growprune.data.bible.BOOKS")
    if book in TEST_BOOKS:
        return "test"
    if book in VALID_BOOKS:
        return "valid"
    return "train"


def split_by_book(pairs: Iterable[VersePair]) -> dict[str, list[VersePair]]:
    """Train/valid/test lists of whole books, each keeping the input order."""
    out: dict[str, list[VersePair]] = {"train": [], "valid": [], "test": []}
    for pair in pairs:
        out[split_of_book(pair.book)].append(pair)
    return out


def _check_languages(source: str, target: str) -> None:
    for language in (source, target):
        _module_for(language)
    if source == target:
        raise ValueError(
            f"source and target language are both {source!r}; pick two of {', '.join(LANGUAGES)}"
        )


def load_aligned(
    source: str = "es", target: str = "en", cache_dir: str | os.PathLike[str] | None = None
) -> tuple[list[VersePair], dict[str, int]]:
    """:func:`align` applied to two modules, with the result cached as JSON.

    Parsing both modules takes ~2 s; the cached pairs load in a fraction of that. The cache file
    name holds a digest of both raw texts, the filter thresholds and :data:`CORPUS_VERSION`, so a
    re-printed module or a changed threshold never reuses stale pairs.
    """
    _check_languages(source, target)
    raw_source, raw_target = read_raw(source, cache_dir), read_raw(target, cache_dir)
    thresholds = (MIN_CHARS, MIN_LENGTH_RATIO, MAX_LENGTH_RATIO, MAX_CHAPTER_MEDIAN_LOG_RATIO)
    h = hashlib.sha256(repr((CORPUS_VERSION, thresholds)).encode())
    for raw in (raw_source, raw_target):
        h.update(hashlib.sha256(raw.encode("utf-8")).digest())
    path = cache_root(cache_dir) / "bible" / f"pairs-{source}-{target}-{h.hexdigest()[:16]}.json"
    if path.is_file():
        try:
            blob = read_json(path, max_bytes=_MAX_CACHE_BYTES)
            return [VersePair(*row) for row in blob["pairs"]], dict(blob["dropped"])
        except (ValueError, KeyError, TypeError):  # DataFileError is a ValueError
            pass  # a damaged cache file is rebuilt below
    pairs, dropped = align(parse_diatheke(raw_source), parse_diatheke(raw_target))
    rows = [[p.book, p.chapter, p.verse, p.source, p.target] for p in pairs]
    atomic_write_text(path, json.dumps({"pairs": rows, "dropped": dropped}, ensure_ascii=False))
    return pairs, dropped


def load_parallel_corpus(
    source: str = "es", target: str = "en", cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, list[VersePair]]:
    """Aligned verse pairs split by whole book (see :data:`SPLIT_RULE`).

    Use :func:`load_aligned` for the counts of dropped pairs.
    """
    pairs, _ = load_aligned(source, target, cache_dir)
    return split_by_book(pairs)


# --- one language alone --------------------------------------------------------------------------


def load_verses(
    language: str = "en", cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, list[tuple[str, str]]]:
    """One module's verses of the 66 books, split by whole book (:data:`SPLIT_RULE`), as
    ``(reference, text)`` in canonical order: what a language model of one language reads.

    Verses shorter than :data:`MIN_CHARS` (how a module marks an omitted or merged verse) and books
    outside the 66 (the English module's deuterocanon) are left out; no alignment is involved.
    """
    out: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    for (book, chapter, verse), text in read_module(language, cache_dir).items():
        if book in _BOOK_SET and len(text) >= MIN_CHARS:
            out[split_of_book(book)].append((f"{book} {chapter}:{verse}", text))
    return out
