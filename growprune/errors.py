"""The base of every error a user can cause and fix.

Each package keeps its own error class (RecipeError, ExportError, CheckpointError, ...), named for
where the problem is, but all of them derive from :class:`GrowpruneError`. That is what lets the
command line have one error boundary: it prints the message of any GrowpruneError as one line and
exits with the class's ``exit_code``, with no list of classes to keep in step with the packages.
Anything else that escapes is a bug in growprune, shown as such.

This module imports nothing, so every package (including the lowest) can use it.
"""

from __future__ import annotations

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class GrowpruneError(Exception):
    """A problem the user can fix; the message is one line naming what is wrong and the fix.

    ``exit_code`` is 1 for a run that could not do what was asked (a diverged loss, a corrupt
    checkpoint) and 2, in :class:`UsageError`, for input that was wrong from the start.
    """

    exit_code: int = EXIT_FAILURE
    prefix: str = "error"


class UsageError(GrowpruneError):
    """Input that cannot be used as given: a bad recipe, a missing dataset, a wrong path."""

    exit_code = EXIT_USAGE


class InterruptedRun(GrowpruneError):
    """Stopped by a signal (Ctrl-C, SIGTERM) after saving what could be saved."""

    exit_code = EXIT_INTERRUPTED
    prefix = "interrupted"


# How torch words an allocation that failed when it raises a plain RuntimeError: the CPU allocator
# ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes"), and CUDA's caching
# allocator or driver in versions and paths that do not raise torch.OutOfMemoryError.
_OUT_OF_MEMORY_TEXTS = (
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
    "CUDA out of memory",
    "CUDA error: out of memory",
)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` says memory ran out: MemoryError, torch's OutOfMemoryError, or a RuntimeError
    with an allocator's out-of-memory text. Such an error is never a damaged input, so code that
    turns RuntimeErrors into other errors passes these through."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _OUT_OF_MEMORY_TEXTS)
