"""L1 sparsity of an activation (e.g. a CNN block's feature maps)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Sparsity"]


class Sparsity(nn.Module):
    """``mean |h|``: the L1 penalty that drives activations (feature maps) towards zero."""

    def forward(self, h: Tensor) -> Tensor:
        return h.abs().mean()
