"""One process at a time in a run directory: an OS file lock held while a run trains or resumes.

Two processes training into one directory (a second ``growprune train --out`` or a second
``--resume``) would interleave metric records and overwrite each other's checkpoints. The command
takes an exclusive ``flock`` on ``<run dir>/.growprune.lock`` before it reads or writes anything
there, without waiting: a second process is told who holds it (pid, host and start time, which
the holder writes into the file) and stops without writing. The kernel releases the lock when
the holder's file descriptor closes, so a crash or ``kill -9`` never leaves a directory locked;
the file itself stays (removing a lock file races with a process opening it).

Under torchrun all ranks share the directory and only rank 0 writes in it; only rank 0 locks.
Where ``fcntl`` does not exist (Windows), no lock is taken.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from growprune.errors import GrowpruneError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunDirectoryLocked", "RunLock", "lock_run_dir"]

LOCK_NAME = ".growprune.lock"
_BUSY = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}


class RunDirectoryLocked(GrowpruneError, RuntimeError):
    """Another process trains or resumes in the run directory."""


class RunLock:
    """A held lock on a run directory; :meth:`release` (or the process ending) lets it go."""

    def __init__(self, run_dir: Path, fd: int | None, created_dir: bool) -> None:
        self.run_dir = run_dir
        self.fd = fd
        self.created_dir = created_dir

    def release(self, *, failed: bool = False) -> None:
        """Unlock. ``failed``: the command failed; a directory this lock created and nothing else
        wrote into is removed again, so a refused recipe leaves no empty run directory behind."""
        if self.fd is None:
            return
        if failed and self.created_dir:
            try:
                if [p.name for p in self.run_dir.iterdir()] == [LOCK_NAME]:
                    (self.run_dir / LOCK_NAME).unlink()
                    self.run_dir.rmdir()
            except OSError:
                pass
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.release(failed=kind is not None)


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file."""
    try:
        data: Any = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {int(data['pid'])} on {data['host']}, since {data['started']}"
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "holder unknown"


def lock_run_dir(run_dir: Path, action: str = "train") -> RunLock:
    """Lock ``run_dir`` for this process (creating the directory if needed), or raise
    :class:`RunDirectoryLocked` naming the process that holds it."""
    created = not run_dir.exists()
    if fcntl is None:  # pragma: no cover - Windows
        return RunLock(run_dir, None, created)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in _BUSY:
                raise
            raise RunDirectoryLocked(
                f"run directory {run_dir} is in use by another growprune process ({holder}); wait for it "
                f"to end or stop it before you {action} there, or choose another directory"
            ) from None
        try:  # the file may have been removed and made again between open and flock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    except OSError:
        os.close(fd)
        raise
    return RunLock(run_dir, fd, created)
