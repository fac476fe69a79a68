"""Atomic file writes: a reader, or a process killed mid-write, never sees a half-written file.

Every file growprune writes that someone else reads later (checkpoints, exports, dataset and
tokenizer caches) goes through :func:`atomic_write`: the content is written to a temporary file
in the destination's directory, flushed to disk (``fsync``) and renamed over the final name
(``os.replace``, atomic on POSIX and Windows), so the final name holds the old file or the new
one, never a partial one. On any error, a ``KeyboardInterrupt`` included, the temporary file is
removed and the destination left as it was.

The file gets the permissions of an ordinary new file, ``0o666`` less the process umask (0644
under the usual umask 022), as ``open(path, "w")`` would give it: the temporary file is created
with mode ``0o666`` and the kernel applies the umask, and that mode is restored if the writer
replaced the file (safetensors does, creating it 0600). ``tempfile.mkstemp`` creates files 0600
whatever the umask, which made checkpoints unreadable to the rest of a group sharing a run.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


def _create_temp(path: Path) -> Path:
    """A new, empty file next to `path` with a unique hidden name, created 0o666 & ~umask."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name next to {path}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Have ``write(tmp)`` fill a temporary file, then make it ``path`` in one step.

    ``write`` receives the temporary file's path (the file exists, empty) and may open it or
    hand it to a library that takes a file name (``torch.save``, ``safetensors``). The parent
    directory is created if missing. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 & ~umask, as the kernel applied it
    try:
        write(tmp)
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # safetensors replaces the file, as 0600
            os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8, newlines written as given (no platform translation)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)``, atomically (argument order as torch.save)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
