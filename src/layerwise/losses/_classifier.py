"""A local classifier head (linear probe + cross-entropy): deep supervision of a hidden layer."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LocalClassifier"]


class LocalClassifier(nn.Module):
    """``CE(W·pool(h) + b, y)``: a linear head on a hidden activation, trained with the model.

    Deeply-supervised nets (Lee et al., AISTATS 2015). The head is an ordinary submodule: put it in
    your model (or an ``nn.ModuleDict`` of heads) so your optimizer trains it.

    Args:
        in_features: features of the pooled activation.
        num_classes: classes.
        pool: ``"flatten"`` (MLP activations, or small feature maps) or ``"avg"`` (global average
            pooling of ``(N, C, ...)`` feature maps, ``in_features = C``).
    """

    def __init__(self, in_features: int, num_classes: int, *, pool: Literal["flatten", "avg"] = "flatten") -> None:
        super().__init__()
        if pool not in ("flatten", "avg"):
            raise ValueError(f"Invalid pool={pool!r}. Expected 'flatten' or 'avg'.")
        self.pool = pool
        self.linear = nn.Linear(in_features, num_classes)

    def logits(self, h: Tensor) -> Tensor:
        h = h.flatten(2).mean(-1) if self.pool == "avg" and h.dim() > 2 else h.flatten(1)
        if h.shape[1] != self.linear.in_features:
            raise ValueError(
                f"LocalClassifier expects {self.linear.in_features} features after pool="
                f"{self.pool!r}, found {h.shape[1]}. Set in_features={h.shape[1]}."
            )
        return self.linear(h)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(h), y)
