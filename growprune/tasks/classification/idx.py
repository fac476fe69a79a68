"""Parser for the IDX format used by MNIST and Fashion-MNIST.

The format is tiny: two zero bytes, a type code byte, a dimension-count byte, one big-endian
uint32 per dimension, then the payload in big-endian row-major order. We parse it ourselves
with numpy (instead of depending on torchvision, which does not run beside the CPU torch build)
and are strict about every length, because a silently truncated download otherwise turns into
a dataset with the wrong number of items and confusing shape errors much later.

Files are read by streaming (:func:`read_idx_file`): the header is decompressed first, and then
exactly the payload it declares, so a gzip bomb (a small ``.gz`` that inflates to gigabytes, or
concatenated members) costs at most the declared size plus one byte, never the bomb's size.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from growprune.bounded import MAX_GZIP_RATIO, max_compressed_size, max_content_size, open_stream

__all__ = [
    "IDX_DTYPES",
    "MAX_IDX_BYTES",
    "IDXFile",
    "IDXFormatError",
    "parse_idx",
    "read_idx",
    "read_idx_file",
    "write_idx",
]

# Type code -> big-endian numpy dtype, from the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The largest payload read_idx accepts unless told otherwise: 16x the Fashion-MNIST/MNIST train
# images (47 MB), so modified or bigger IDX sets load, while a forged header cannot ask for more.
MAX_IDX_BYTES = 1 << 30


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
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no int64 overflow
    payload = len(data) - header_len
    if payload != expected:
        kind = "truncated" if payload < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{source}: IDX payload {kind}: {payload:,} bytes for dims {dims} of {dtype.name}, "
            f"expected {expected:,}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Native byte order + a writable copy, so torch.from_numpy can share it without warnings.
    return arr.astype(dtype.newbyteorder("="), copy=True)


@dataclass
class IDXFile:
    """One IDX file as read: the array (native byte order), the 4-byte magic, and SHA-256 digests
    of the file as stored (gzip or not) and of its decompressed content."""

    array: np.ndarray
    magic: int
    file_sha256: str
    content_sha256: str


def read_idx_file(
    path: str | Path,
    *,
    max_bytes: int = MAX_IDX_BYTES,
    check_header: Callable[[int, tuple[int, ...]], None] | None = None,
) -> IDXFile:
    """Read an IDX file (gunzipped when it starts with the gzip magic) by streaming: the header,
    then exactly the payload it declares, then nothing more.

    ``check_header(magic, dims)`` runs before the payload is read (raise there to refuse a file by
    its header alone). A payload over ``max_bytes``, a payload larger than the file on disk can
    hold (its size, or :data:`~growprune.bounded.MAX_GZIP_RATIO` times it for gzip: checked
    before anything is allocated), a file on disk larger than that payload can compress to,
    anything after the payload (trailing bytes, another gzip member), a short file, and a path
    that is not a regular file (a FIFO, a symlink to /dev/zero) are :class:`IDXFormatError`
    naming the file.
    """
    path = Path(path)

    def fail(where: Path, why: str) -> IDXFormatError:
        return IDXFormatError(f"{where}: {why}")

    with open_stream(path, max_bytes=max_compressed_size(max_bytes), fail=fail, what="an IDX file") as stream:
        head = stream.read(4, "an IDX header")
        if head[0] != 0 or head[1] != 0:
            raise fail(path, f"bad IDX magic {head.hex()} (the first two bytes must be zero)")
        type_code, ndim = head[2], head[3]
        if type_code not in IDX_DTYPES:
            raise fail(path, f"unknown IDX type code 0x{type_code:02x}")
        if ndim == 0:
            raise fail(path, "IDX header declares zero dimensions")
        dims = tuple(int(d) for d in np.frombuffer(stream.read(4 * ndim, "the IDX dimensions"), dtype=">u4"))
        dtype = IDX_DTYPES[type_code]
        magic = int.from_bytes(head, "big")
        if check_header is not None:
            check_header(magic, dims)
        payload = math.prod(dims) * dtype.itemsize  # Python ints: no int64 overflow
        if payload > max_bytes:
            raise fail(
                path,
                f"IDX header declares dims {dims} of {dtype.name}, {payload:,} bytes, more than the "
                f"{max_bytes:,} allowed",
            )
        total = 4 + 4 * ndim + payload
        if total > max_content_size(stream.size, stream.compressed):
            holds = (
                f"a {stream.size:,}-byte gzip file holds at most {max_content_size(stream.size, True):,} "
                f"bytes (deflate expands at most {MAX_GZIP_RATIO}:1)"
                if stream.compressed
                else f"the file has {stream.size:,} bytes"
            )
            raise fail(
                path,
                f"IDX header declares dims {dims} of {dtype.name}, {total:,} bytes, but {holds}: the "
                "header is wrong or the file is truncated",
            )
        if stream.compressed and stream.size > max_compressed_size(total):
            raise fail(
                path,
                f"holds more than the IDX payload its header declares: {stream.size:,} bytes on disk, "
                f"more than {total:,} bytes of content can compress to (another gzip member or trailing "
                "bytes)",
            )
        # Allocated only now that the size is checked; filled in place and used as the array's
        # memory (swapped in place where the machine's byte order differs), so the payload is
        # held once.
        body = stream.read_into(bytearray(payload), f"dims {dims} of {dtype.name}")
        stream.expect_end(f"the IDX payload of dims {dims}")
        array = np.frombuffer(body, dtype=dtype).reshape(dims)
        native = dtype.newbyteorder("=")
        if native != dtype:
            array = array.byteswap(inplace=True).view(native)
        return IDXFile(array, magic, stream.file_sha256, stream.content_sha256)


def read_idx(path: str | Path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, gunzipping it when it starts with the gzip magic bytes (see
    :func:`read_idx_file` for the bounds)."""
    return read_idx_file(path, max_bytes=max_bytes).array


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
