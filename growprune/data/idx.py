"""Parser for the IDX format used by MNIST and Fashion-MNIST.

The format is tiny: two zero bytes, a type code byte, a dimension-count byte, one big-endian
uint32 per dimension, then the payload in big-endian row-major order. We parse it ourselves
with numpy (instead of depending on torchvision, which does not run beside the CPU torch build)
and are strict about every length, because a silently truncated download otherwise turns into
a dataset with the wrong number of items and confusing shape errors much later.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "IDXFormatError", "parse_idx", "read_idx", "write_idx"]

# Type code -> big-endian numpy dtype, from the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """Raised when bytes are not a well-formed IDX file (bad magic, truncated, trailing data)."""


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX payload into a numpy array in native byte order.

    ``source`` only appears in error messages so users can tell which file is broken.
    """
    if len(data) < 4:
        raise IDXFormatError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise IDXFormatError(f"{source}: bad IDX magic {data[:4].hex()} (the first two bytes must be zero)")
    if type_code not in IDX_DTYPES:
        raise IDXFormatError(f"{source}: unknown IDX type code 0x{type_code:02x}")
    if ndim == 0:
        raise IDXFormatError(f"{source}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(f"{source}: truncated IDX header ({len(data)} bytes, need {header_len})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_len
    if payload != expected:
        kind = "truncated" if payload < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{source}: IDX payload {kind}: {payload} bytes for dims {dims} of {dtype.name}, "
            f"expected {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Native byte order + a writable copy, so torch.from_numpy can share it without warnings.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gunzipping it first when it starts with the gzip magic bytes."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise IDXFormatError(f"{path}: damaged gzip stream ({exc})") from exc
    return parse_idx(raw, source=str(path))


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``).

    Used by tests to build tiny fixture files; kept here so writer and reader stay in sync.
    """
    path = Path(path)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError("IDX arrays need between 1 and 255 dimensions")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(body, mtime=0) if compress else body)
