"""Checkpoints that survive crashes: atomic writes, integrity checks, fallback to the last good one.

A checkpoint is written to a temporary file in the same directory, flushed to disk and renamed
over its final name (growprune.files), so a kill at any moment leaves either the old file or the
new one, never a half-written one under a real name. What a checkpoint file is (its format tag,
required keys, names, and reading it with ``weights_only=True``) is defined in
:mod:`growprune.checkpoint`, which export reads too; this module is the training side that
writes and rotates them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from growprune.checkpoint import (
    CHECKPOINT_FORMAT,
    STATE_KEYS,
    CheckpointError,
    load_checkpoint,
    non_finite_entry,
    numbered_checkpoint_name,
    numbered_checkpoints,
)
from growprune.files import atomic_torch_save

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "CheckpointManager", "load_checkpoint"]


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
        atomic_torch_save(payload, path)
        for old in self.numbered()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def save_named(self, payload: dict[str, Any], name: str) -> Path:
        path = self.directory / f"{name}.pt"
        atomic_torch_save(payload, path)
        return path

    def latest_good(self) -> tuple[Path, dict[str, Any]] | None:
        """Newest checkpoint that loads and holds only finite state; the others are reported by
        name and skipped (growprune no longer writes non-finite ones, older versions did)."""
        for path in reversed(self.numbered()):
            try:
                payload = load_checkpoint(path)
            except CheckpointError as err:
                warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
                continue
            bad = next((b for k in STATE_KEYS if (b := non_finite_entry(payload[k], k)) is not None), None)
            if bad is None:
                return path, payload
            warnings.warn(
                f"checkpoint {path} holds a diverged state ({bad} is not finite); falling back to the "
                "previous checkpoint",
                stacklevel=2,
            )
        return None
