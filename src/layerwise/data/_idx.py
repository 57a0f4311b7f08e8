"""Reader for the IDX format of MNIST (LeCun et al.), gzip-compressed or raw.

Layout: two zero bytes, a type code, the number of dimensions ``d``, ``d`` big-endian uint32
sizes, then the data in C order, big-endian.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ._errors import DataError

__all__ = ["read_idx", "read_idx_bytes", "parse_idx"]

_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(path: Path) -> bytes:
    """Return the uncompressed bytes of ``path`` (``.gz`` files are decompressed)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"IDX file {str(path)!r} does not exist. Point the data directory at the "
            "folder holding it (data_dir=... / CLI --data-dir, or LAYERWISE_DATA_DIR) "
            "or pass download=True (CLI: --download)."
        ) from None
    except OSError as exc:
        raise DataError(
            f"IDX file {str(path)!r} cannot be read ({exc.strerror}). "
            "Check its permissions or point the data directory elsewhere."
        ) from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"IDX file {str(path)!r} is a damaged or truncated gzip file ({exc}). "
                "Delete it and download it again (download=True; CLI: --download)."
            ) from exc
    return raw


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes into an array of the declared shape and type."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(
            f"{name!r} is not an IDX file: expected the magic bytes 00 00 <type> <ndim> "
            f"with type in {sorted(hex(t) for t in _TYPES)}, found {data[:4].hex(' ')!r}. "
            "The file is corrupted or of another format: replace it (download=True; CLI: --download)."
        )
    dtype, ndim = _TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name!r} is truncated: its header declares {ndim} dimensions but the file "
            f"has {len(data)} bytes. Replace it (download=True; CLI: --download)."
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{name!r} is {what}: shape {shape} of {dtype} needs {expected} bytes, "
            f"found {len(data)}. Replace the file (download=True; CLI: --download)."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a NumPy array.

    Example:
        >>> images = read_idx("mnist/train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape
        (60000, 28, 28)
    """
    path = Path(path)
    return parse_idx(read_idx_bytes(path), str(path))
