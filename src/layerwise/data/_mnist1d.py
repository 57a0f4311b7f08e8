"""MNIST-1D (Greydanus & Kobak 2020): 1-D signals of 40 points made from 10 digit templates, generated offline."""

from __future__ import annotations

import random

import numpy as np

from ._mnist import ArraySplits

__all__ = ["load_mnist1d"]


def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> ArraySplits:
    """MNIST-1D as the ``mnist1d`` package generates it (its default arguments: each template padded, scaled,
    sheared, translated, with correlated and i.i.d. noise, down-sampled to 40 points, standardised), the first 80% of
    ``num_samples`` for training. Python's and NumPy's global random states are left as they were (the generator
    seeds both)."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError(
            "the 'mnist1d' data set needs the mnist1d package (it generates the data, no download): "
            "pip install 'layerwise[mnist1d]'"
        ) from exc
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    states = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    return ArraySplits(
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )
