"""Batches must carry the dataset index of every example: stored z is tied to that example."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["IndexedDataset", "unpack_batch"]


class IndexedDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """Wrap tensors ``(x, y)`` so that each item is ``(x[i], y[i], i)``."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"Invalid data: x has {len(x)} examples but y has {len(y)}.")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        return self.x[i], self.y[i], i


def unpack_batch(batch: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, y, idx)`` from a loader's batch, or a clear error when the indices are missing."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 3):
        found = (
            f"a {type(batch).__name__} of length {len(batch)}"
            if isinstance(batch, (tuple, list))
            else type(batch).__name__
        )
        raise TypeError(
            f"Invalid batch: decoupled training needs (x, y, idx) with the dataset index of every "
            f"example, found {found}. Wrap your data in layerwise.decoupled.IndexedDataset(x, y) "
            "(or return the index from your Dataset's __getitem__)."
        )
    x, y, idx = batch
    idx = torch.as_tensor(idx)
    if idx.dtype not in (torch.int64, torch.int32) or idx.dim() != 1 or len(idx) != len(x):
        raise TypeError(
            f"Invalid batch indices: expected one integer index per example ({len(x)}), found "
            f"{idx.dtype} of shape {tuple(idx.shape)}."
        )
    return x, y, idx.long()
