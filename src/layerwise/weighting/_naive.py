"""The seeds' literal recipe, kept as an ablation: weights trained on the total loss. It collapses."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._base import Weighting

__all__ = ["Naive"]


class Naive(Weighting):
    """``L_main + Σ_i w_i L_i`` with ``w_i`` trainable parameters that YOUR optimizer updates on this total.

    Documented ablation, not a method: ``∂total/∂w_i = L_i ≥ 0``, so every ``w_i`` only falls, goes
    negative, and the optimizer then maximises the auxiliary losses (see
    ``benchmarks/aux-deep-mlp-*``). Constructing it warns.
    """

    def __init__(self, terms: Sequence[str], *, main: str, init: float = 0.1, **kwargs: Any) -> None:
        super().__init__(terms, **kwargs)
        if main not in self.terms:
            raise ValueError(f"Invalid main={main!r}: not one of the terms {self.terms}.")
        self.main = main
        self.raw = nn.Parameter(torch.full((len(self.terms),), float(init)))
        warnings.warn(
            "Naive weighting trains the weights on the total loss: they only decrease, go negative, and "
            "the auxiliary losses are then maximised. Use it as an ablation; for learned weights use "
            "Usefulness, GradNorm or Uncertainty.",
            UserWarning,
            stacklevel=2,
        )

    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        is_main = torch.tensor([t == self.main for t in self.terms], device=values.device)
        return torch.where(is_main, torch.ones_like(self.raw), self.raw).to(values.dtype)

    def extra_repr(self) -> str:
        return f"terms={self.terms}, main={self.main!r}"
