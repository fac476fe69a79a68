"""Where generated data and derived files (BPE vocabularies, encoded corpora, generated sets) are kept.

One directory for every task, so ``$GROWPRUNE_CACHE`` moves all of them at once.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "cache_root"]

CACHE_ENV_VAR = "GROWPRUNE_CACHE"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: the argument, else ``$GROWPRUNE_CACHE``, else ``~/.cache/growprune``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "growprune"
