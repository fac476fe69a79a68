"""The checkpoint file format: what a growprune checkpoint file is, and how one is read and checked.

Training writes checkpoints (:mod:`growprune.train.checkpoint`: atomic writes, rotation, falling
back to the last good one); export reads them. Both need the same definition of the file, so it
lives here, below both. A checkpoint is a ``torch.save``'d dict tagged ``format``
(:data:`CHECKPOINT_FORMAT`) with the model's state dict (mask buffers included), optimizer and
sparsifier state, the position in the schedule and the resolved recipe. Numbered checkpoints are
named ``ckpt-<step, 8+ digits>.pt``. Loading uses ``weights_only=True``: a checkpoint is data,
and unpickling arbitrary objects from a run directory someone sent you is code execution.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import torch

from growprune.errors import GrowpruneError, is_out_of_memory

__all__ = [
    "CHECKPOINT_FORMAT",
    "REQUIRED_KEYS",
    "CheckpointError",
    "load_checkpoint",
    "non_finite_entry",
    "numbered_checkpoint_name",
    "numbered_checkpoints",
]

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = frozenset({"model", "optimizer", "sparsifier", "position", "recipe"})
_NUMBERED = re.compile(r"ckpt-(\d{8,})\.pt$")
# Pieces of torch.load's error messages (see _load_failure).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


class CheckpointError(GrowpruneError, RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def numbered_checkpoint_name(step: int) -> str:
    """File name of the numbered checkpoint taken at ``step``."""
    return f"ckpt-{step:08d}.pt"


def numbered_checkpoints(directory: Path) -> list[Path]:
    """The numbered checkpoints in ``directory``, oldest first (none if it does not exist)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NUMBERED.search(p.name))]
    return [p for _, p in sorted(found)]


_UNREADABLE = frozenset({errno.EACCES, errno.EPERM, errno.EIO, errno.EISDIR})


def _load_failure(path: Path, err: Exception) -> str:
    """One neutral line for a checkpoint ``torch.load(weights_only=True)`` refused.

    torch's own message spans several lines and advises loading the file again with
    ``weights_only=False`` or allowlisting the refused class: on a file someone sent you, that is
    running their code. The line keeps what is wrong with the file and drops the advice.
    """
    if isinstance(err, OSError) and err.errno in _UNREADABLE and err.strerror:
        # The file system refused the read (permissions, an I/O error, a directory): the file may
        # be perfectly good, so say what happened instead of calling it damaged. (Other OSErrors,
        # such as EINVAL from mapping a truncated file, do come from a damaged file.)
        return f"checkpoint {path} cannot be read ({err.strerror}); check the file and its permissions"
    text = _ANSI.sub("", str(err))
    unsafe = _UNSAFE_GLOBAL.search(text)
    if unsafe:
        return (
            f"checkpoint {path} contains a reference to the Python object '{unsafe.group(1).rstrip('.,;')}', "
            "which growprune checkpoints never hold (only tensors and plain values): the file was not "
            "written by growprune or was altered, so it is not loaded"
        )
    detail = _UNPICKLER_DETAIL.search(text)
    if detail:
        reason = detail.group(1)
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = lines[0] if lines else ""
    reason = reason.split(". ")[0].strip().rstrip(".")
    if "weights_only" in reason or "safe_globals" in reason:
        reason = "not a checkpoint that can be read as plain data"
    return (
        f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {reason or 'the file ends early'})"
    )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and sanity-check one checkpoint file.

    Raises:
        CheckpointError: the file is corrupt or truncated, not a growprune checkpoint of this
            format, or lacks one of :data:`REQUIRED_KEYS`.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt zips
        if is_out_of_memory(err):  # a file too big for this machine is not a damaged one
            raise
        raise CheckpointError(_load_failure(path, err)) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a growprune checkpoint (format {CHECKPOINT_FORMAT})")
    missing = REQUIRED_KEYS - set(payload)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(sorted(missing))}")
    problem = _structure_problem(payload)
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {path} is damaged: {problem}; it was altered or not written by growprune"
        )
    return payload


def _structure_problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a loaded checkpoint's contents, or None.

    Loading with ``weights_only`` keeps a file from running code, not from holding nonsense; a
    position that is text, or a recipe that is a number, would otherwise fail deep inside the
    resume as an internal error.
    """
    for key in sorted(REQUIRED_KEYS):
        if not isinstance(payload[key], dict):
            return f"'{key}' is a {type(payload[key]).__name__}, not a mapping"
    position = payload["position"]
    for key in ("step", "epoch", "batch"):
        value = position.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"position.{key} is {value!r}, not a count"
    if not isinstance(position.get("elapsed", 0.0), int | float):
        return f"position.elapsed is {position.get('elapsed')!r}, not a number of seconds"
    return None


STATE_KEYS = ("model", "optimizer", "sparsifier")


def non_finite_entry(state: Any, path: str = "") -> str | None:
    """The dotted name of the first floating-point tensor in ``state`` holding inf or NaN, or None.

    ``state`` is a checkpoint's state (nested dicts, lists and tensors). A diverged run can hide its
    inf values where the loss does not look: BatchNorm running variances (train-mode BatchNorm
    never reads them), optimizer moments, ADMM's dual variables. Checked on every write, so no
    checkpoint that would diverge again on resume replaces a good one.
    """
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() and not bool(torch.isfinite(state).all()):
            return path or "tensor"
        return None
    if isinstance(state, dict):
        items: Any = state.items()
    elif isinstance(state, list | tuple):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = non_finite_entry(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None
