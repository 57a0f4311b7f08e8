import gzip
import struct

import numpy as np
import pytest

from layerwise.data import DataError, parse_idx, read_idx


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_reads_good_file_raw_and_gz(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = _idx(a)
    path = tmp_path / ("x.gz" if compress else "x")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, a)


def test_reads_big_endian_int32_and_float():
    a = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    np.testing.assert_array_equal(parse_idx(_idx(a, 0x0C)), a)
    f = np.array([1.5, -2.25], dtype=np.float32)
    np.testing.assert_array_equal(parse_idx(_idx(f, 0x0D)), f)


def test_truncated_file_names_sizes(tmp_path):
    data = _idx(np.zeros((10, 5), dtype=np.uint8))[:-7]
    path = tmp_path / "t"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"'.*t' is truncated: shape \(10, 5\).*needs 62 bytes, found 55"):
        read_idx(path)


def test_trailing_bytes_rejected():
    with pytest.raises(DataError, match="longer than its header says"):
        parse_idx(_idx(np.zeros(3, dtype=np.uint8)) + b"\x00", "x")


def test_wrong_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x08\x03\x00\x00" + b"\x00" * 20)
    with pytest.raises(DataError, match="is not an IDX file: expected the magic bytes"):
        read_idx(path)


def test_truncated_header():
    with pytest.raises(DataError, match="header declares 3 dimensions"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]), "h")


def test_corrupted_gzip(tmp_path):
    blob = bytearray(gzip.compress(_idx(np.arange(1000, dtype=np.uint8) % 7)))
    path = tmp_path / "c.gz"
    path.write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")
