"""Data sets by name."""

from __future__ import annotations

from pathlib import Path

from ._digits import load_digits
from ._mnist import ArraySplits, load_mnist
from ._mnist1d import load_mnist1d

__all__ = ["DATASETS", "load_dataset"]

DATASETS: tuple[str, ...] = ("digits", "mnist", "mnist1d")


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = False) -> ArraySplits:
    """Load a data set by name: ``"digits"`` (offline, ships with scikit-learn), ``"mnist"`` or ``"mnist1d"`` (1-D
    signals, generated offline by the ``mnist1d`` package)."""
    if name == "mnist":
        return load_mnist(data_dir, download=download)
    if name == "digits":
        return load_digits()
    if name == "mnist1d":
        return load_mnist1d()
    raise ValueError(f"Invalid dataset={name!r}. Expected one of {list(DATASETS)}.")
