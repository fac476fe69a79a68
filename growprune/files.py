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

The temporary file is named ``.NAME.xxxxxxxx.tmp`` (8 hex digits), with NAME shortened where the
whole would exceed the file system's limit on a name (``NAME_MAX``, 255 bytes on most), so any
name that is legal as the destination can be written. A process killed with SIGKILL cannot remove
its temporary file; :func:`remove_stale_temps` removes such leftovers (only names of that form,
only files of the current user) and is called when a run directory is trained or resumed in.

A full disk (``ENOSPC``) or an exceeded quota (``EDQUOT``) is an :class:`OSError` with that errno
whatever wrote the file: torch reports a failed write as a ``RuntimeError`` without the errno and
safetensors as its own error, and both are turned back into the ``OSError`` they were
(:func:`no_space_message` words it for the user).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_temp_name",
    "no_space_message",
    "remove_stale_temps",
    "temp_name",
]

# .NAME.xxxxxxxx.tmp: what _create_temp makes (NAME possibly shortened), and all remove_stale_temps removes.
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
_TEMP_EXTRA = len(".") + len(".00000000.tmp")  # bytes the temporary name adds to NAME
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
# How Rust libraries such as safetensors name the errno: "(os error 28)", or "Os { code: 28, ...".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")


def name_max(directory: Path) -> int:
    """The longest file name, in bytes, the file system of `directory` takes (255 if unknown)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no limit reported
        return 255


def temp_name(name: str, token: str, limit: int = 255) -> str:
    """``.NAME.TOKEN.tmp``, NAME cut (at a character boundary) so the whole fits `limit` bytes."""
    encoded = os.fsencode(name)
    budget = max(1, limit - _TEMP_EXTRA)
    if len(encoded) > budget:
        while budget > 1 and (encoded[budget] & 0xC0) == 0x80:  # do not split a UTF-8 character
            budget -= 1
        name = os.fsdecode(encoded[:budget])
    return f".{name}.{token}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether `name` has the form of atomic_write's temporary files."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files a killed writer left in `directory` (not recursive).

    Only names of atomic_write's form, only regular files owned by the current user; call it only
    where no other process writes (growprune holds the run directory's lock when it does).
    Returns the removed files.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def no_space_message(err: BaseException) -> str | None:
    """The one line for a write that failed for want of space or quota, or None for other errors."""
    if not isinstance(err, OSError) or err.errno not in NO_SPACE_ERRNOS:
        return None
    what = "no space left" if err.errno == errno.ENOSPC else "disk quota exceeded"
    reason = err.strerror or os.strerror(err.errno)
    if err.filename:
        target = Path(os.fsdecode(err.filename))
        where = next((p for p in target.parents if p.is_dir()), target.parent)
        return (
            f"{what} on the file system of {where}: writing {target} failed ({reason}); free space there "
            "or choose another output directory"
        )
    return f"{what} on a file system written to ({reason}); free space or choose another output directory"


def _as_os_error(err: Exception, path: Path) -> OSError | None:
    """The OSError behind a writer's failure that does not say so, or None.

    torch's writer reports a failed write as a RuntimeError ("PytorchStreamWriter failed writing
    file ...: file write failed") without the errno; a file system left with no free space is then
    taken to be the cause. safetensors (Rust) says "(os error N)".
    """
    if isinstance(err, OSError):
        return None
    text = str(err)
    found = _RUST_OS_ERROR.search(text)
    if found:
        code = int(found.group(1) or found.group(2))
        return OSError(code, os.strerror(code), str(path))
    if isinstance(err, RuntimeError) and ("write failed" in text or "PytorchStreamWriter failed" in text):
        try:
            vfs = os.statvfs(path.parent)
            full = vfs.f_bavail * vfs.f_frsize < (1 << 20)
        except (OSError, AttributeError):
            full = False
        if full:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


def _create_temp(path: Path) -> Path:
    """A new, empty file next to `path` with a unique hidden name, created 0o666 & ~umask."""
    limit = name_max(path.parent)
    for _ in range(100):
        tmp = path.with_name(temp_name(path.name, secrets.token_hex(4), limit))
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
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        os_error = _as_os_error(err, path) if isinstance(err, Exception) else None
        if isinstance(err, OSError) and err.filename is not None and Path(os.fsdecode(err.filename)) == tmp:
            # the temporary name means nothing to the user: name the file they asked for
            os_error = OSError(err.errno, err.strerror, str(path))
        if os_error is not None:
            raise os_error from err
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
