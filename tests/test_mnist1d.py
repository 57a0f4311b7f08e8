"""MNIST-1D through ``load_dataset``: generated offline, deterministic, the global random states left alone, and a
clear error naming the extra when the generator is missing."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from layerwise.data import DATASETS, load_dataset, load_mnist1d


def test_mnist1d_is_forty_point_signals_of_ten_classes_generated_the_same_every_time():
    a, b = load_dataset("mnist1d"), load_mnist1d()
    assert "mnist1d" in DATASETS
    assert a.train_x.shape == (4000, 40) and a.test_x.shape == (1000, 40) and a.train_x.dtype == np.float32
    assert sorted(set(a.train_y.tolist())) == list(range(10))
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)
    assert abs(float(np.concatenate([a.train_x, a.test_x]).std()) - 1) < 0.01  # standardised, as the package does
    assert not np.array_equal(load_mnist1d(seed=1).train_x, a.train_x)


def test_the_callers_random_states_are_left_as_they_were():
    random.seed(3)
    np.random.seed(3)
    expected = random.random(), np.random.rand()
    random.seed(3)
    np.random.seed(3)
    load_mnist1d(num_samples=200)
    assert (random.random(), np.random.rand()) == expected


def test_missing_generator_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r"pip install 'layerwise\[mnist1d\]'"):
        load_dataset("mnist1d")
