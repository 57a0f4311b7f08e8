"""Layer-wise gradient decoupling: auxiliary activations per example (the Method of Auxiliary Coordinates)."""

from ._data import IndexedDataset, unpack_batch
from ._schedule import constant, geometric
from ._sources import ForwardDeltaZ, ForwardZ, StoredZ, ZSource
from ._stages import StageFailure, split_blocks
from ._store import ZStore
from ._trainer import DecoupledTrainer, squared_error

__all__ = [
    "DecoupledTrainer",
    "ForwardDeltaZ",
    "ForwardZ",
    "IndexedDataset",
    "StageFailure",
    "StoredZ",
    "ZSource",
    "ZStore",
    "constant",
    "geometric",
    "split_blocks",
    "squared_error",
    "unpack_batch",
]
