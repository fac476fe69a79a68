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
import operator

import numpy as np

from growprune.errors import UsageError

__all__ = ["SeedError", "check_seed", "is_bool", "keyed_seed", "stream_seed"]

_SEED_BITS = (1 << 63) - 1


class SeedError(UsageError, ValueError):
    """A seed that is not an integer (a float, a bool, a string)."""


def is_bool(value: object) -> bool:
    """True for a bool of any kind: ``bool``, ``numpy.bool_``, a 0-d bool array or tensor (all of
    which have ``__index__``, so an integer check must exclude them first). torch is not imported."""
    return isinstance(value, (bool, np.bool_)) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def check_seed(seed: object, name: str = "seed") -> int:
    """`seed` as a plain Python ``int``, or :class:`SeedError` if it is not an integer.

    Integer types of any kind (``int``, ``numpy.int64``, a 0-d integer tensor: anything with
    ``__index__``) are accepted and normalised to ``int``, so that ``keyed_seed``, which hashes
    ``repr``, gives ``numpy.int64(3)`` the masks of ``3``. Refused: ``bool`` (``True`` is not a
    seed someone meant), and every float, ``2.0`` included: seeds are identities, not quantities,
    a float seed is almost always a computation gone wrong (``n / 2``), and accepting ``2.0`` but
    refusing ``2.5`` would make the valid set depend on the value. Truncating (as ``int()`` does)
    would silently give ``1.5`` and ``1.9`` the masks of ``1``.
    """
    if is_bool(seed):
        raise SeedError(f"{name} must be an integer, got the bool {seed!r}; pass e.g. {name}=0")
    try:
        return int(operator.index(seed))  # type: ignore[arg-type]
    except TypeError:
        pass
    if isinstance(seed, (float, np.floating)) and float(seed).is_integer():
        hint = f"{name}={int(seed)}"
    else:
        hint = f"an int such as {name}=0"
    raise SeedError(
        f"{name} must be an integer, got {type(seed).__name__} {seed!r} (not truncated, so that two "
        f"different values never give the same masks); pass {hint}"
    )


def stream_seed(*keys: int) -> int:
    """Mix non-negative ints into one 63-bit seed (the data loaders' shuffle/augment streams).

    ``numpy.random.SeedSequence`` hashes its entropy well, so nearby keys such as (seed, 3) and
    (seed, 4) give unrelated streams.
    """
    keys = tuple(check_seed(k, "seed key") for k in keys)
    if any(k < 0 for k in keys):
        raise SeedError(f"seed keys must be non-negative integers, got {keys}")
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state) & _SEED_BITS


def keyed_seed(*keys: object) -> int:
    """A 63-bit seed that depends only on ``repr(keys)`` (the sparsity side's random masks)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_BITS
