"""Checkpoints that survive crashes: atomic writes, integrity checks, fallback to the last good one.

A checkpoint is written to a temporary file in the same directory, flushed to disk and renamed
over its final name, so a kill at any moment leaves either the old file or the new one, never a
half-written one under a real name. What a checkpoint file is (its format tag, required keys,
names, and reading it with ``weights_only=True``) is defined in :mod:`growprune.checkpoint`,
which export reads too; this module is the training side that writes and rotates them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from growprune.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    numbered_checkpoint_name,
    numbered_checkpoints,
)

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "CheckpointManager", "atomic_save", "load_checkpoint"]


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointManager:
    """Numbered checkpoints in one directory: keep the last N, plus `best.pt` and `final.pt`."""

    def __init__(self, directory: Path, keep_last: int = 3) -> None:
        self.directory = directory
        self.keep_last = keep_last

    def numbered(self) -> list[Path]:
        """Existing numbered checkpoints, oldest first."""
        return numbered_checkpoints(self.directory)

    def save(self, payload: dict[str, Any], step: int) -> Path:
        path = self.directory / numbered_checkpoint_name(step)
        atomic_save(payload, path)
        for old in self.numbered()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def save_named(self, payload: dict[str, Any], name: str) -> Path:
        path = self.directory / f"{name}.pt"
        atomic_save(payload, path)
        return path

    def latest_good(self) -> tuple[Path, dict[str, Any]] | None:
        """Newest checkpoint that loads; corrupt ones are reported by name and skipped."""
        for path in reversed(self.numbered()):
            try:
                return path, load_checkpoint(path)
            except CheckpointError as err:
                warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
        return None
