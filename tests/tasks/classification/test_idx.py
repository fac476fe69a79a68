"""IDX parsing on tiny files written in a temporary directory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from growprune.tasks.classification.idx import IDXFormatError, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        np.array([[-1, 2], [300, -400]], dtype=np.int16),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    ],
)
def test_roundtrip(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_header_is_big_endian_and_matches_mnist_magic(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((5, 28, 28), dtype=np.uint8))
    raw = path.read_bytes()
    assert int.from_bytes(raw[:4], "big") == 0x00000803  # MNIST image-file magic
    assert [int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12)] == [5, 28, 28]
    assert len(raw) == 16 + 5 * 28 * 28


def _bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def test_truncated_payload() -> None:
    data = _bytes(np.ones((4, 3), np.uint8))[:-1]
    with pytest.raises(IDXFormatError, match="truncated"):
        parse_idx(data, source="f.idx")


def test_trailing_bytes() -> None:
    with pytest.raises(IDXFormatError, match="trailing"):
        parse_idx(_bytes(np.ones((4, 3), np.uint8)) + b"\x00")


def test_truncated_header() -> None:
    data = _bytes(np.ones((4, 3, 2), np.uint8))[:9]
    with pytest.raises(IDXFormatError, match="truncated IDX header"):
        parse_idx(data)


@pytest.mark.parametrize("data", [b"", b"\x00\x00"])
def test_too_short(data: bytes) -> None:
    with pytest.raises(IDXFormatError, match="too short"):
        parse_idx(data)


def test_wrong_magic_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x12\x34" + _bytes(np.ones(3, np.uint8))[2:])
    with pytest.raises(IDXFormatError, match="bad IDX magic") as err:
        read_idx(path)
    assert "bad.idx" in str(err.value)


def test_unknown_type_code() -> None:
    data = bytearray(_bytes(np.ones(3, np.uint8)))
    data[2] = 0x07
    with pytest.raises(IDXFormatError, match="type code 0x07"):
        parse_idx(bytes(data))


def test_zero_dimensions() -> None:
    with pytest.raises(IDXFormatError, match="zero dimensions"):
        parse_idx(b"\x00\x00\x08\x00")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(_bytes(np.ones((50, 50), np.uint8)))[:-10])
    with pytest.raises(IDXFormatError, match="gzip"):
        read_idx(path)
