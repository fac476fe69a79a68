"""Errors of every dataset reader: a missing or corrupt dataset is a usage error naming the fix."""

from __future__ import annotations

from growprune.errors import UsageError

__all__ = ["DatasetCorruptError", "DatasetNotFoundError"]


class DatasetNotFoundError(UsageError, FileNotFoundError):
    """The dataset files are not in any searched directory; the message says how to get them."""


class DatasetCorruptError(UsageError, ValueError):
    """A dataset file exists but fails its checksum or format checks."""
