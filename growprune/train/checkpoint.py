"""Checkpoints that survive crashes: atomic writes, integrity checks, fallback to the last good one.

A checkpoint is written to a temporary file in the same directory, flushed to disk and renamed
over its final name (growprune.files), so a kill at any moment leaves either the old file or the
new one, never a half-written one under a real name. Loading uses ``weights_only=True``: a
checkpoint is data, and unpickling arbitrary objects from a run directory someone sent you is
code execution.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from growprune.files import atomic_torch_save

CHECKPOINT_FORMAT = 1
_NAME = re.compile(r"ckpt-(\d{8,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and sanity-check one checkpoint file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt zips
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a growprune checkpoint (format {CHECKPOINT_FORMAT})")
    missing = {"model", "optimizer", "sparsifier", "position", "recipe"} - set(payload)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(sorted(missing))}")
    return payload


class CheckpointManager:
    """Numbered checkpoints in one directory: keep the last N, plus `best.pt` and `final.pt`."""

    def __init__(self, directory: Path, keep_last: int = 3) -> None:
        self.directory = directory
        self.keep_last = keep_last

    def numbered(self) -> list[Path]:
        """Existing numbered checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.search(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, payload: dict[str, Any], step: int) -> Path:
        path = self.directory / f"ckpt-{step:08d}.pt"
        atomic_torch_save(payload, path)
        for old in self.numbered()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def save_named(self, payload: dict[str, Any], name: str) -> Path:
        path = self.directory / f"{name}.pt"
        atomic_torch_save(payload, path)
        return path

    def latest_good(self) -> tuple[Path, dict[str, Any]] | None:
        """Newest checkpoint that loads; corrupt ones are reported by name and skipped."""
        for path in reversed(self.numbered()):
            try:
                return path, load_checkpoint(path)
            except CheckpointError as err:
                warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
        return None
