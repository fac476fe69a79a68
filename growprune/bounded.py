"""Bounded reading of files users hand us: regular files only, size caps, exact gunzip, shallow JSON.

Data folders come from users and downloads, and every file in them is read by a loader before a
single step trains; recipes, run directories (metrics, sparsity reports) and checkpoints to export
come from users too, so this module sits at the top of the package (beside :mod:`growprune.files`,
its writing counterpart) where the data loaders, the recipe reader, the report and export all
reach it without importing one another.

A file there may be a symlink to ``/dev/zero`` (a read never ends), a FIFO (``open()`` itself
blocks forever), a 3 MB gzip that decompresses to gigabytes, or JSON nested
100k deep (a RecursionError inside the decoder). Each loader reads through these helpers, so each
of those ends in one line naming the file, in memory and time bounded by the format:

- :func:`regular_file` / :func:`open_regular`: ``os.stat`` (symlinks resolved; never blocks, not
  even on a FIFO) must show a regular file no larger than the caller's cap *before* anything is
  opened; the open itself is non-blocking and re-checked with ``fstat`` (a file swapped in between
  is caught too).
- :func:`read_bytes` / :func:`read_text`: the whole file, never more than the cap.
- :func:`read_json`: the above, then the nesting depth is measured (linear time, strings skipped)
  and refused past ``max_depth`` before ``json.loads`` recurses.
- :func:`open_stream`: a file that may be gzip-compressed, read in exact amounts: the caller asks
  for the bytes the format's header declares (an IDX header gives the exact payload size) and
  then for the end; more data (trailing bytes, further gzip members) or less is an error, and
  nothing is decompressed beyond what was asked plus one byte.

Every helper takes ``fail(path, why) -> Exception``, so each loader keeps its own error class and
message style (``CocoFormatError``, ``PartDatasetError``, ``DatasetCorruptError``, ...); the
default raises :class:`DataFileError`. ``why`` is a clause that reads after ``"<path>: "``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from growprune.errors import UsageError

__all__ = [
    "GZIP_MAGIC",
    "MAX_GZIP_RATIO",
    "MAX_JSON_DEPTH",
    "DataFileError",
    "ExactStream",
    "Fail",
    "json_depth",
    "max_compressed_size",
    "max_content_size",
    "open_regular",
    "open_stream",
    "read_bytes",
    "read_json",
    "read_text",
    "regular_file",
]

GZIP_MAGIC = b"\x1f\x8b"
# Deeper than any data format we read needs (a COCO annotation file nests 5 levels, a ShapeNet
# split file 1), and far below the depth at which json.loads runs out of recursion.
MAX_JSON_DEPTH = 64
_CHUNK = 1 << 20

Fail = Callable[[Path, str], Exception]


class DataFileError(UsageError, ValueError):
    """A data file that cannot be read as it is (not a regular file, too large, malformed)."""


def _default_fail(path: Path, why: str) -> Exception:
    return DataFileError(f"{path}: {why}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _describe(path: Path, mode: int) -> str:
    kind = _kind(mode)
    if os.path.islink(path):
        kind = f"a symlink to {os.path.realpath(path)}, {kind}"
    return kind


def _broken_link(path: Path, err: OSError | None = None) -> str | None:
    """Why ``path`` (which ``os.stat`` could not follow) is a broken symlink, or None when it is
    none: a name that exists as a link is not "missing", and reinstalling will not fix it."""
    if err is not None and err.errno != errno.ELOOP:
        return None
    try:
        target = os.readlink(path)
    except (OSError, ValueError):
        target = None
    if err is not None:  # ELOOP: the name itself or a folder on its way is part of a loop
        where = f"a symlink to {target}" if target is not None else "a path through a symlink"
        return (
            f"is {where} that never resolves (a symlink loop: {err.strerror or err}); "
            "replace it with the file itself"
        )
    if target is None:
        return None  # no link (or a link in a parent folder; the plain "missing" then applies)
    return f"is a dangling symlink to {target} (which does not exist); replace it with the file itself"


def regular_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    fail: Fail = _default_fail,
    missing: str = "no such file",
    what: str = "this file",
) -> os.stat_result:
    """``os.stat`` of ``path`` (symlinks followed), which must be a regular file of at most
    ``max_bytes``; otherwise ``fail(path, why)`` is raised. Opens nothing, so it never blocks."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise fail(path, _broken_link(path) or missing) from None
    except OSError as err:
        raise fail(path, _broken_link(path, err) or f"cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # a NUL byte in the name (e.g. a file name taken from a JSON file)
        raise fail(path, f"is not a usable file name ({err})") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(
            path, f"is {_describe(path, st.st_mode)}, not a regular file; replace it with the file itself"
        )
    if st.st_size > max_bytes:
        raise fail(
            path,
            f"is {st.st_size:,} bytes, more than the {max_bytes:,} {what} may have; "
            "check that it is the right file",
        )
    return st


def open_regular(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    fail: Fail = _default_fail,
    missing: str = "no such file",
    what: str = "this file",
) -> BinaryIO:
    """A binary file object of ``path``, checked as in :func:`regular_file` before the open and
    with ``fstat`` after it (the open is non-blocking, so a FIFO swapped in cannot hang it)."""
    path = Path(path)
    regular_file(path, max_bytes=max_bytes, fail=fail, missing=missing, what=what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise fail(path, missing) from None
    except OSError as err:
        raise fail(path, f"cannot be opened ({err.strerror or err})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            raise fail(path, f"changed while being opened (now {_kind(st.st_mode)}, {st.st_size:,} bytes)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    fail: Fail = _default_fail,
    missing: str = "no such file",
    what: str = "this file",
) -> bytes:
    """The whole regular file ``path``, refused past ``max_bytes`` (also if it grows while read)."""
    path = Path(path)
    with open_regular(path, max_bytes=max_bytes, fail=fail, missing=missing, what=what) as file:
        return _read_rest(path, file, max_bytes=max_bytes, fail=fail, what=what)


def _read_rest(path: Path, file: BinaryIO, *, max_bytes: int, fail: Fail, what: str) -> bytes:
    """The rest of ``file``, asking for the size ``fstat`` shows plus one byte (not ``max_bytes``:
    a read of n bytes reserves n), refused past ``max_bytes``."""
    try:
        size = os.fstat(file.fileno()).st_size
        data = file.read(min(size, max_bytes) + 1)
        if len(data) > size:  # it grows while read: take what the cap allows and decide
            data += file.read(max_bytes + 1 - len(data)) if len(data) <= max_bytes else b""
    except OSError as err:
        raise fail(path, f"cannot be read ({err.strerror or err})") from None
    if len(data) > max_bytes:
        raise fail(path, f"grew past the {max_bytes:,} bytes {what} may have while being read")
    return data


def read_text(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    fail: Fail = _default_fail,
    missing: str = "no such file",
    what: str = "this file",
    errors: str = "strict",
) -> str:
    """:func:`read_bytes` decoded as UTF-8; undecodable bytes are ``fail`` (with ``errors="strict"``)."""
    path = Path(path)
    data = read_bytes(path, max_bytes=max_bytes, fail=fail, missing=missing, what=what)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        raise fail(path, f"is not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x})") from None


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text ``data`` (brackets inside strings
    do not count), in linear time and without recursion. Only meaningful for valid JSON; for
    anything else it is a bound that ``json.loads`` then rejects."""
    # Escapes first (so every quote left delimits a string), then strings, then all but brackets:
    # each step is one linear pass of the regex engine or of bytes.translate.
    # A file without backslashes (most) skips the escape pass, so at most one reduced copy of
    # the text exists beside it at a time.
    unescaped = _ESCAPE.sub(b"", data) if b"\\" in data else data
    strings_removed = _STRING.sub(b"", unescaped)
    del unescaped
    brackets = strings_removed.translate(None, _NOT_BRACKETS)
    del strings_removed
    deepest, depth = 0, 0
    for start in range(0, len(brackets), 1 << 24):
        chunk = np.frombuffer(
            brackets, dtype=np.uint8, count=min(1 << 24, len(brackets) - start), offset=start
        )
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int64)
        levels = np.cumsum(steps) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


_BLANK = b" \t\r\n"


def _check_start(path: Path, file: BinaryIO, starts: bytes, *, fail: Fail, expected: str) -> None:
    """``fail`` unless the first byte of ``file`` that is not JSON whitespace is one of ``starts``;
    reads in 64 kB pieces (a file of blanks costs no memory) and rewinds."""
    try:
        while True:
            piece = file.read(1 << 16)
            first = piece.lstrip(_BLANK)[:1]
            if first or not piece:
                break
        file.seek(0)
    except OSError as err:
        raise fail(path, f"cannot be read ({err.strerror or err})") from None
    if not first:
        raise fail(path, f"is empty (or blank); expected {expected}")
    if first == b"\xef" and piece.lstrip(_BLANK).startswith(b"\xef\xbb\xbf"):
        raise fail(
            path,
            f"starts with a UTF-8 byte-order mark, which JSON forbids: save it without; expected {expected}",
        )
    if first not in [bytes([b]) for b in starts]:
        shown = " or ".join(repr(chr(b)) for b in starts)
        raise fail(
            path,
            f"does not start like JSON: its first non-blank byte is 0x{first[0]:02x}, not {shown}; "
            f"expected {expected}",
        )


def read_json(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    fail: Fail = _default_fail,
    expected: str = "JSON",
    missing: str = "no such file",
    invalid: str = "not valid JSON",
    starts: bytes = b"{[",
) -> Any:
    """The parsed JSON of the regular file ``path``: at most ``max_bytes`` of UTF-8, nested at
    most ``max_depth`` deep (measured before parsing). Every failure is ``fail`` naming the file
    and ``expected``.

    Before the file is read whole, its first non-blank byte must be one of ``starts`` (an object
    or an array), so a file of NUL bytes or a binary file given by mistake is refused from its
    first kilobytes. The bytes are freed once decoded: besides what ``json.loads`` builds, the
    read holds at most about twice the file's size."""
    path = Path(path)
    what = "a JSON file here"
    with open_regular(path, max_bytes=max_bytes, fail=fail, missing=missing, what=what) as file:
        _check_start(path, file, starts, fail=fail, expected=expected)
        data = _read_rest(path, file, max_bytes=max_bytes, fail=fail, what=what)
    depth = json_depth(data)
    too_deep = (
        f"nests arrays/objects {{depth}} levels deep (at most {max_depth} allowed); expected {expected}"
    )
    if depth > max_depth:
        raise fail(path, too_deep.format(depth=depth))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(path, f"is not UTF-8 text (byte {err.start}); expected {expected}") from None
    del data  # the parse holds the text and what it builds, not the bytes as well
    try:
        return json.loads(text)
    except ValueError as err:  # JSONDecodeError, or a number past Python's int digit limit
        raise fail(path, f"{invalid} ({err}); expected {expected}") from None
    except RecursionError:  # not reachable past the depth check; kept as the last line of defence
        raise fail(path, too_deep.format(depth="too many")) from None


# Deflate's largest expansion: one 258-byte match per 2 bits gives a little over 1032:1, so a gzip
# file of n bytes never holds more than MAX_GZIP_RATIO * n bytes of content.
MAX_GZIP_RATIO = 1032


def max_content_size(stream_size: int, compressed: bool) -> int:
    """The most content bytes a file of ``stream_size`` bytes on disk can hold: itself when it
    is not compressed, :data:`MAX_GZIP_RATIO` times it (plus a block's slack) when it is gzip."""
    return MAX_GZIP_RATIO * stream_size + 1024 if compressed else stream_size


def max_compressed_size(size: int) -> int:
    """The most bytes a gzip file holding ``size`` bytes needs: deflate's stored blocks add 5
    bytes per 64 KiB, a member 18 more; the rest is room for a file name and comment."""
    return size + size // 8192 + 64 * 1024


class ExactStream:
    """Bytes of a regular file, gunzipped when it starts with the gzip magic, read in exact
    amounts (see :func:`open_stream`). Concatenated gzip members are one stream, as gzip reads
    them. ``file_sha256`` (of the bytes on disk) is complete once :meth:`expect_end` passed;
    ``content_sha256`` covers the decompressed bytes read so far."""

    def __init__(self, path: Path, file: BinaryIO, size: int, fail: Fail) -> None:
        self.path, self.size, self._file, self._fail = path, size, file, fail
        self._file_hash, self._content_hash = hashlib.sha256(), hashlib.sha256()
        head = self._raw(2)
        self.compressed = head == GZIP_MAGIC
        self._input = head  # raw bytes not yet decompressed
        self._inflate: Any = None  # the decompressor of the current gzip member, if one is open
        self._member_bytes = 0  # content bytes the current member gave so far
        self.position = 0  # decompressed bytes handed out

    # -- raw file bytes
    def _raw(self, n: int = _CHUNK) -> bytes:
        try:
            data = self._file.read(n)
        except OSError as err:
            raise self._fail(self.path, f"cannot be read ({err.strerror or err})") from None
        self._file_hash.update(data)
        return data

    def _take_input(self) -> bytes:
        data, self._input = self._input, b""
        return data or self._raw()

    def _damaged(self, err: Exception) -> Exception:
        return self._fail(self.path, f"damaged gzip stream ({err})")

    def _next(self, limit: int, *, new_member: bool = True) -> bytes:
        """Up to ``limit`` (> 0) more content bytes; b"" only at the end of the file (or, with
        ``new_member=False``, at the end of the current gzip member)."""
        if not self.compressed:
            if self._input:
                part, self._input = self._input[:limit], self._input[limit:]
                return part
            return self._raw(min(limit, _CHUNK))
        while True:
            data = self._take_input()
            if self._inflate is None:
                if not data or not new_member:
                    self._input = data
                    return b""  # the end, between members
                self._inflate = zlib.decompressobj(wbits=31)  # one gzip member
                self._member_bytes = 0
            try:
                out = self._inflate.decompress(data, limit)
            except zlib.error as err:
                raise self._damaged(err) from None
            self._member_bytes += len(out)
            if self._inflate.eof:
                if not self._member_bytes:  # legal gzip, but no writer makes one: the bomb pattern
                    raise self._fail(self.path, "holds an empty gzip member; expected the data itself")
                self._input = self._inflate.unused_data
                self._inflate = None
            else:
                self._input = self._inflate.unconsumed_tail
                if not out and not data:
                    raise self._damaged(EOFError("the file ends inside a gzip member; it is truncated"))
            if out:
                return out

    def read(self, n: int, what: str = "data") -> bytes:
        """Exactly ``n`` content bytes, else ``fail`` saying the file ends early."""
        return bytes(self.read_into(bytearray(n), what))

    def read_into(self, buffer: bytearray, what: str = "data") -> bytearray:
        """Fill ``buffer`` (preallocated by the caller, after its size was checked) with exactly
        ``len(buffer)`` content bytes, else ``fail`` saying the file ends early. Decompresses at
        most :data:`_CHUNK` bytes at a time, so nothing but ``buffer`` grows with the size."""
        n, got = len(buffer), 0
        view = memoryview(buffer)
        while got < n:
            part = self._next(min(n - got, _CHUNK))
            if not part:
                raise self._fail(
                    self.path,
                    f"ends early: {self.position + got:,} bytes of content where {what} needs "
                    f"{self.position + n:,}",
                )
            view[got : got + len(part)] = part
            self._content_hash.update(part)
            got += len(part)
        self.position += n
        return buffer

    def expect_end(self, what: str = "the declared data") -> None:
        """``fail`` unless the file holds nothing after what was read. Finishes the current gzip
        member (its CRC is checked there) but decompresses at most one byte past the request."""
        more = self._next(1, new_member=False)
        if more or self._input or self._raw(1):
            kind = "another gzip member or trailing bytes" if self.compressed else "trailing bytes"
            kind = "more content" if more else kind
            raise self._fail(self.path, f"holds more than {what} ({kind} after byte {self.position:,})")

    @property
    def file_sha256(self) -> str:
        return self._file_hash.hexdigest()

    @property
    def content_sha256(self) -> str:
        return self._content_hash.hexdigest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ExactStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stream(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    fail: Fail = _default_fail,
    missing: str = "no such file",
    what: str = "this file",
) -> ExactStream:
    """An :class:`ExactStream` of the regular file ``path`` (at most ``max_bytes`` on disk)."""
    path = Path(path)
    file = open_regular(path, max_bytes=max_bytes, fail=fail, missing=missing, what=what)
    try:
        return ExactStream(path, file, os.fstat(file.fileno()).st_size, fail)
    except BaseException:
        file.close()
        raise
