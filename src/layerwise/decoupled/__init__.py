"""Layer-wise gradient decoupling: auxiliary activations per example (the Method of Auxiliary Coordinates)."""

from ._data import IndexedDataset, unpack_batch
from ._schedule import constant, geometric
from ._store import ZStore
from ._trainer import DecoupledTrainer, squared_error

__all__ = ["DecoupledTrainer", "IndexedDataset", "ZStore", "constant", "geometric", "squared_error", "unpack_batch"]
