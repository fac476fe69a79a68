"""The on-disk layout: safetensors tensors plus string metadata, and its integrity checks.

Tensor keys: a dense tensor under its state-dict name; a pruned tensor as ``NAME::mask`` (the
packed bitmask, uint8) and ``NAME::values`` (kept entries in row-major order). Metadata values
are strings (safetensors allows nothing else), JSON where structured:

``growprune.format``          ``sparse`` or ``dense``
``growprune.format_version``  integer; a reader refuses versions newer than it knows
``growprune.version``         library version that wrote the file
``growprune.dtype``           ``fp32`` / ``fp16`` / ``bf16`` (floating tensors; integer buffers keep theirs)
``growprune.model``           ``{"name": builder, "args": {...}}`` or ``null``
``growprune.recipe``          the resolved training recipe or ``null``
``growprune.sparsity``        per-layer shape, numel, zeros, sparsity and the overall figure
``growprune.layout``          every state entry in order: shape, dtype, encoding
``growprune.sha256``          digest of all tensor bytes, so silent corruption is caught on load

safetensors itself rejects truncated files and malformed headers; the digest catches flipped
bytes inside the data, which nothing else would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

FORMAT_VERSION = 1
FORMATS = ("sparse", "dense")
PREFIX = "growprune."
MASK_KEY = "{}::mask"
VALUES_KEY = "{}::values"
REQUIRED_METADATA = ("format", "format_version", "version", "dtype", "model", "layout", "sha256")


def digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of all tensors, in sorted key order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
