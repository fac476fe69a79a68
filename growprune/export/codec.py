"""Encoding of one tensor: a packed bitmask plus the kept values, and the dtype names.

A pruned weight at sparsity s costs ``(1 - s) * itemsize + 1/8`` bytes per element this way,
against ``itemsize`` dense: at 90% and fp32 that is 0.525 against 4 bytes (0.13x). A bitmask
beats index lists down to about 97% sparsity for fp32 and needs no index dtype decisions, and
``numpy.packbits`` is a single vectorised call each way.
"""

from __future__ import annotations

import numpy as np
import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Names used for every tensor dtype in the file's layout (safetensors has its own, but the layout
# is checked before any tensor is touched, so it needs names independent of the library).
TENSOR_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
BITORDER = "big"  # numpy.packbits default: the first element is the most significant bit


def dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    """'fp32' / 'fp16' / 'bf16' (or a torch dtype) -> torch dtype."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise ValueError(f"dtype must be one of float32, float16, bfloat16, got {name}")
        return name
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def short_dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


def tensor_dtype_name(dtype: torch.dtype) -> str:
    for key, value in TENSOR_DTYPES.items():
        if value == dtype:
            return key
    raise ValueError(f"tensors of dtype {dtype} cannot be exported")


def cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Floating tensors to the export dtype; integer and bool buffers keep theirs (step counters)."""
    tensor = tensor.detach().to("cpu")
    if tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous().clone()


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor of any shape -> uint8 tensor of ceil(numel / 8) bytes."""
    flat = mask.detach().to("cpu", torch.bool).reshape(-1).numpy()
    return torch.from_numpy(np.packbits(flat, bitorder=BITORDER))


def unpack_mask(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_mask`: a flat bool tensor of ``numel`` entries."""
    bits = np.unpackbits(packed.numpy(), count=numel, bitorder=BITORDER)
    return torch.from_numpy(bits.astype(np.bool_))


def packed_size(numel: int) -> int:
    return (numel + 7) // 8


def encode_sparse(
    weight: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed mask, kept values in ``dtype``); the caller has checked that pruned entries are 0."""
    values = cast(weight, dtype).reshape(-1)[mask.detach().to("cpu").reshape(-1)]
    return pack_mask(mask), values.contiguous()


def decode_sparse(
    packed: torch.Tensor, values: torch.Tensor, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense tensor with zeros where pruned, flat bool mask)."""
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    mask = unpack_mask(packed, numel)
    out = torch.zeros(numel, dtype=values.dtype)
    out[mask] = values
    return out.reshape(shape), mask
