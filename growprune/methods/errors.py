"""Errors of the sparsifier API that the user causes and can fix (one line each, naming the fix).

They derive from :class:`~growprune.errors.GrowpruneError` (so the command line prints them as one
line) and from the built-in class the same mistake raised before, so existing ``except
ValueError`` / ``except RuntimeError`` code keeps working.
"""

from __future__ import annotations

from growprune.errors import GrowpruneError


class SparsifierError(GrowpruneError, ValueError):
    """A sparsifier cannot be used as asked."""


class SparsifierStateError(SparsifierError):
    """``load_state_dict`` (or ``state=``) refused a saved state; nothing was changed."""


class SparsifierRemovedError(SparsifierError, RuntimeError, AttributeError):
    """A sparsifier was used after ``remove()`` detached it from its model and optimizer.

    Also an :class:`AttributeError`: a removed sparsifier has no usable API, so ``hasattr(s,
    "phase")`` is False and ``getattr(s, "phase", None)`` is None, as for any missing attribute,
    while using the attribute still raises this error with its message.
    """


__all__ = ["SparsifierError", "SparsifierRemovedError", "SparsifierStateError"]
