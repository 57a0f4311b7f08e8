"""The four MNIST files: names, the MD5 of their uncompressed bytes, shapes, and their verification."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._errors import DataError
from ._idx import parse_idx, read_idx_bytes

__all__ = ["MNIST_FILES", "MnistFile", "verify_file"]


@dataclass(frozen=True)
class MnistFile:
    """One MNIST file: its name (without ``.gz``), MD5 of the UNCOMPRESSED bytes, and shape."""

    name: str
    md5: str
    shape: tuple[int, ...]


MNIST_FILES: dict[str, MnistFile] = {
    "train_images": MnistFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
    "train_labels": MnistFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", (60000,)),
    "test_images": MnistFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
    "test_labels": MnistFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", (10000,)),
}


def verify_file(path: Path, spec: MnistFile) -> np.ndarray:
    """Read ``path``, check the MD5 of its uncompressed content and its shape, return the array."""
    data = read_idx_bytes(path)
    digest = hashlib.md5(data).hexdigest()
    if digest != spec.md5:
        raise DataError(
            f"MNIST file {str(path)!r} is corrupted: the MD5 of its uncompressed content "
            f"is {digest}, expected {spec.md5}. Delete it and fetch it again (download=True; CLI: --download)."
        )
    array = parse_idx(data, str(path))
    if array.shape != spec.shape:
        raise DataError(
            f"MNIST file {str(path)!r} has shape {array.shape}, expected {spec.shape}. "
            "Replace it with the original file (download=True; CLI: --download)."
        )
    return array
