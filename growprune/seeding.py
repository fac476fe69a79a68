"""Seed derivation: one home for turning a base seed and a few keys into an independent seed.

Two derivations live here because each is a contract that recorded results depend on: changing
either would change every data order or every random mask drawn so far. Pick by what the keys
are and by what the seed feeds:

* :func:`stream_seed` -- non-negative *integers* only, hashed by ``numpy.random.SeedSequence``.
  The data side's contract: a loader's shuffle of epoch ``e`` is ``stream_seed(seed, 0, e)``, its
  augmentation of batch ``b`` is ``stream_seed(seed, 1, e, b)``, synthetic data sets use
  ``stream_seed(seed, stream)``. (SeedSequence ignores trailing zero keys: ``(s,)`` and
  ``(s, 0, 0)`` give the same seed.)
* :func:`keyed_seed` -- *any* keys with a stable ``repr`` (ints, strings such as an event or a
  parameter name), hashed by SHA-256 of ``repr(keys)``. The sparsity side's contract: random
  scores of ``(seed, purpose, event, layer)``, random partitions, P-GaP's per-worker streams.

Both return a 63-bit non-negative int (what ``torch.Generator.manual_seed`` takes), depend on
nothing but their arguments, and are the same on every platform and in every process (unlike
``hash()``).
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["keyed_seed", "stream_seed"]

_SEED_BITS = (1 << 63) - 1


def stream_seed(*keys: int) -> int:
    """Mix non-negative ints into one 63-bit seed (the data loaders' shuffle/augment streams).

    ``numpy.random.SeedSequence`` hashes its entropy well, so nearby keys such as (seed, 3) and
    (seed, 4) give unrelated streams.
    """
    if any(k < 0 for k in keys):
        raise ValueError(f"seed keys must be non-negative, got {keys}")
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state) & _SEED_BITS


def keyed_seed(*keys: object) -> int:
    """A 63-bit seed that depends only on ``repr(keys)`` (the sparsity side's random masks)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_BITS
