"""The auxiliary activation store: one z_t^i per training example i and hidden layer t."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["ZStore"]

_DTYPES = {torch.float32: np.float32, torch.bfloat16: np.uint16}  # bf16 bits kept as uint16 on disk


class ZStore:
    """Auxiliary activations ``z_t^i`` of shape ``(n, *shape_t)`` per hidden layer ``t``.

    Stored as float32 or bfloat16, in memory or memory-mapped from files in ``path`` (for data sets
    whose z do not fit in RAM). Reads and writes touch only the rows of a batch; no optimizer state
    is kept (the trainer's z-steps are plain gradient steps), so memory is ``n · Σ_t |z_t| ·`` bytes per
    value, nothing more. Rows come back as float32 on ``device``.

    Args:
        n: number of training examples (the dataset's length; batches carry their indices).
        shapes: the per-example shape of each hidden layer's activation.
        dtype: ``torch.float32`` or ``torch.bfloat16``.
        path: a directory for memory-mapped files ``z{t}.bin`` (created); ``None`` keeps z in memory.
        device: where rows are returned (the store itself stays on the CPU when memory-mapped).
        layers: allocate only these hidden layers (a stage of layer-parallel training); default all.
    """

    def __init__(
        self,
        n: int,
        shapes: Sequence[Sequence[int]],
        *,
        dtype: torch.dtype = torch.float32,
        path: str | Path | None = None,
        device: torch.device | str | None = None,
        layers: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Invalid n={n!r}: expected the number of training examples, a whole number >= 1.")
        if dtype not in _DTYPES:
            raise ValueError(f"Invalid dtype={dtype}: expected torch.float32 or torch.bfloat16.")
        shapes = [tuple(int(d) for d in s) for s in shapes]
        if not shapes:
            raise ValueError("Invalid shapes: a decoupled network needs at least one hidden layer (two blocks).")
        self.n, self.shapes, self.dtype, self.path = n, shapes, dtype, Path(path) if path is not None else None
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._data: list[Tensor] = []
        self._maps: list[np.memmap] = []
        self.layers = sorted(set(layers)) if layers is not None else list(range(len(shapes)))
        if any(not 0 <= t < len(shapes) for t in self.layers):
            raise ValueError(f"Invalid layers={list(layers or [])}: expected indices in [0, {len(shapes)}).")
        for t, shape in enumerate(shapes):
            if t not in self.layers:
                self._data.append(torch.empty(0))
                continue
            if self.path is None:
                store_device = self.device
                self._data.append(torch.zeros((n, *shape), dtype=dtype, device=store_device))
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                mm = np.memmap(self.path / f"z{t}.bin", dtype=_DTYPES[dtype], mode="w+", shape=(n, *shape))
                self._maps.append(mm)
                view = torch.from_numpy(mm)
                self._data.append(view.view(torch.bfloat16) if dtype == torch.bfloat16 else view)

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.shapes)

    def nbytes(self) -> int:
        """Bytes held by the z values (in memory or on disk)."""
        return sum(self.n * math.prod(self.shapes[t]) * (2 if self.dtype == torch.bfloat16 else 4) for t in self.layers)

    def _index(self, t: int, idx: Tensor) -> Tensor:
        if not 0 <= t < self.depth:
            raise ValueError(f"Invalid layer t={t}: the store has hidden layers 0..{self.depth - 1}.")
        if t not in self.layers:
            raise ValueError(f"Invalid layer t={t}: this store only allocates layers {self.layers}.")
        idx = torch.as_tensor(idx)
        if idx.dtype not in (torch.int64, torch.int32) or idx.dim() != 1:
            raise TypeError(
                f"Invalid idx: expected a 1-D integer tensor of example indices, found {idx.dtype} "
                f"of shape {tuple(idx.shape)}."
            )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise ValueError(
                f"Invalid idx: example indices must lie in [0, {self.n}), found {int(idx.min())}.."
                f"{int(idx.max())}. Is the store built for this dataset's length?"
            )
        return idx.to(self._data[t].device)

    def rows(self, t: int, idx: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """``z_t`` of the examples ``idx``, as ``dtype`` (default float32) on ``device``."""
        i = self._index(t, idx)
        return self._data[t].index_select(0, i).to(device=self.device, dtype=dtype)

    def write(self, t: int, idx: Tensor, values: Tensor) -> None:
        """Store ``values`` as ``z_t`` of the examples ``idx`` (rounded to the store's dtype)."""
        i = self._index(t, idx)
        expected = (i.numel(), *self.shapes[t])
        if tuple(values.shape) != expected:
            raise ValueError(f"Invalid values for layer {t}: expected shape {expected}, found {tuple(values.shape)}.")
        if not torch.isfinite(values).all():
            raise ValueError(
                f"Invalid values for layer {t}: they contain NaN or inf; nothing was written. Lower "
                "the z learning rate or the penalty mu."
            )
        self._data[t].index_copy_(0, i, values.detach().to(device=self._data[t].device, dtype=self.dtype))

    def flush(self) -> None:
        """Write memory-mapped pages to disk."""
        for mm in self._maps:
            mm.flush()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else f"memory ({self.device})"
        return (
            f"ZStore(n={self.n}, shapes={self.shapes}, dtype={self.dtype}, in {where}, {self.nbytes() / 2**20:.1f} MiB)"
        )
