"""Consistency between consecutive states of a sequence (e.g. an RNN's hidden states)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Consistency"]


class Consistency(nn.Module):
    """``mean_t (1 − cos(h_t, h_{t+1}))`` over the time dimension ``dim`` of ``h``.

    Zero when consecutive states point the same way; at most 2. ``h`` is ``(batch, time, hidden)``
    by default (``dim=1``; use ``dim=0`` for time-major RNN outputs).
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, h: Tensor) -> Tensor:
        steps = h.shape[self.dim] if h.dim() > self.dim else 0
        if h.dim() < 2 or steps < 2:
            raise ValueError(
                f"Consistency needs at least two states along dim={self.dim}, found shape "
                f"{tuple(h.shape)}. Tap the RNN's full output (every time step)."
            )
        a, b = h.narrow(self.dim, 0, steps - 1), h.narrow(self.dim, 1, steps - 1)
        feature_dim = -1 if self.dim != h.dim() - 1 else -2
        return (1 - F.cosine_similarity(a, b, dim=feature_dim, eps=self.eps)).mean()
