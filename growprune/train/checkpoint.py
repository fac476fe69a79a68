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
from collections.abc import Callable
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
        self.problems: list[str] = []  # why latest_good skipped each checkpoint, newest first

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

    def latest_good(
        self, validate: Callable[[Path, dict[str, Any]], None] | None = None
    ) -> tuple[Path, dict[str, Any]] | None:
        """Newest checkpoint that loads, holds only finite state and passes ``validate``.

        ``validate(path, payload)`` raises :class:`CheckpointError` for a checkpoint that loads but
        cannot be used (a position outside the run, state that does not fit the model); other
        errors propagate. Every newer checkpoint skipped is reported in a warning naming it, why,
        and the checkpoint used instead; when none is usable, :attr:`problems` holds the reasons,
        newest first, and None is returned. (growprune no longer writes non-finite checkpoints;
        older versions did.)
        """
        self.problems = []
        for path in reversed(self.numbered()):
            try:
                payload = load_checkpoint(path)
                bad = next(
                    (b for k in STATE_KEYS if (b := non_finite_entry(payload[k], k)) is not None), None
                )
                if bad is not None:
                    raise CheckpointError(f"checkpoint {path} holds a diverged state ({bad} is not finite)")
                if validate is not None:
                    validate(path, payload)
            except CheckpointError as err:
                self.problems.append(str(err))
                continue
            for problem in self.problems:
                warnings.warn(
                    f"{problem}; skipped it and fell back to the previous good checkpoint {path}",
                    stacklevel=2,
                )
            return path, payload
        return None
