"""The one error class of export and load.

Every failure a user can cause here (a corrupt file, masks that disagree with weights, a model
the loader cannot rebuild) raises :class:`ExportError` with a one-line message naming the file or
layer and what to do, so the CLI can print it as is and callers can catch a single type.

Arguments that cannot be used as given (an output path that is a directory, lies under a file or
cannot be written; a source that does not exist; an unknown format or dtype) raise the subclass
:class:`ExportUsageError`, which is also a :class:`~growprune.errors.UsageError`: exit code 2 at
the command line, against 1 for a problem found in the files themselves.
"""

from __future__ import annotations

from growprune.errors import EXIT_USAGE, GrowpruneError, UsageError


class ExportError(GrowpruneError, ValueError):
    """An export that cannot be written or a file that cannot be loaded; the message says why."""


class ExportUsageError(ExportError, UsageError):
    """An argument of the export (output path, source path, format, dtype) that cannot be used."""

    exit_code = EXIT_USAGE


class ExportWarning(UserWarning):
    """Export went ahead, but not as asked: e.g. ``final.pt`` was unreadable and ``best.pt`` was used."""
