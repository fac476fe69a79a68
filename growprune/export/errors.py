"""The one error class of export and load.

Every failure a user can cause here (a corrupt file, masks that disagree with weights, a model
the loader cannot rebuild) raises :class:`ExportError` with a one-line message naming the file or
layer and what to do, so the CLI can print it as is and callers can catch a single type.
"""

from __future__ import annotations

from growprune.errors import GrowpruneError


class ExportError(GrowpruneError, ValueError):
    """An export that cannot be written or a file that cannot be loaded; the message says why."""
