"""scikit-learn's digits (1,797 images of 8x8 pixels): ships with scikit-learn, works offline."""

from __future__ import annotations

import numpy as np

from ._mnist import ArraySplits

__all__ = ["load_digits"]


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ArraySplits:
    """Digits as float32 pixels in [0, 1] (``/16``), split train/test by a seeded permutation."""
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError("the 'digits' data set needs scikit-learn: pip install 'layerwise[bench]'") from exc
    bunch = _sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return ArraySplits(x[train], y[train], x[test], y[test])
