"""Data sets by name."""

from __future__ import annotations

from pathlib import Path

from ._digits import load_digits
from ._mnist import ArraySplits, load_mnist

__all__ = ["DATASETS", "load_dataset"]

DATASETS: tuple[str, ...] = ("digits", "mnist")


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = False) -> ArraySplits:
    """Load a data set by name: ``"digits"`` (offline, ships with scikit-learn) or ``"mnist"``."""
    if name == "mnist":
        return load_mnist(data_dir, download=download)
    if name == "digits":
        return load_digits()
    raise ValueError(f"Invalid dataset={name!r}. Expected one of {list(DATASETS)}.")
