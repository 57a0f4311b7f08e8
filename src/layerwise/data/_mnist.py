"""MNIST (LeCun, Cortes, Burges) from IDX files, verified against the published MD5 sums."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._download import download_mnist
from ._errors import DataError
from ._mnist_files import MNIST_FILES, MnistFile, verify_file
from ._paths import resolve_data_dir

__all__ = ["MNIST_FILES", "MnistFile", "ArraySplits", "mnist_dir", "load_mnist", "verify_file"]


@dataclass(frozen=True)
class ArraySplits:
    """Train and test arrays of a data set: inputs ``(n, d)`` float32 (images in [0, 1]; MNIST-1D standardised),
    integer labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def mnist_dir(data_dir: str | Path | None = None) -> Path:
    """The folder that holds (or will hold) the MNIST files: ``<data dir>/mnist``."""
    return resolve_data_dir(data_dir) / "mnist"


def _find(folder: Path, spec: MnistFile) -> Path:
    for candidate in (folder / f"{spec.name}.gz", folder / spec.name):
        if candidate.is_file():
            return candidate
    if not folder.is_dir():
        raise DataError(
            f"MNIST directory {str(folder)!r} does not exist. Pass data_dir=... "
            "(CLI: --data-dir) or set LAYERWISE_DATA_DIR to a folder with an 'mnist/' sub-folder holding the four "
            "IDX files, or pass download=True (CLI: --download) to fetch them into it."
        )
    raise DataError(
        f"MNIST file {spec.name!r} (or {spec.name}.gz) is missing from {str(folder)!r}. "
        "Copy it there or pass download=True (CLI: --download) to fetch it."
    )


def load_mnist(data_dir: str | Path | None = None, *, download: bool = False) -> ArraySplits:
    """Load MNIST as flattened float32 pixels in [0, 1] (``/255``) and int64 labels.

    Args:
        data_dir: the data directory (files in ``<data_dir>/mnist``); ``None`` resolves it from
            ``$LAYERWISE_DATA_DIR`` and then the user cache directory.
        download: fetch missing files from the standard mirrors first (checksum-verified, atomic).
    """
    folder = mnist_dir(data_dir)
    if download:
        download_mnist(folder)
    arrays = {key: verify_file(_find(folder, spec), spec) for key, spec in MNIST_FILES.items()}

    def pixels(a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], -1).astype(np.float32) / 255.0

    return ArraySplits(
        pixels(arrays["train_images"]),
        arrays["train_labels"].astype(np.int64),
        pixels(arrays["test_images"]),
        arrays["test_labels"].astype(np.int64),
    )
