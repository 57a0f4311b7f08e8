"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._base import Weighting

__all__ = ["Uncertainty"]


class Uncertainty(Weighting):
    """``Σ_k ½ e^{−s_k} L_k + ½ s_k`` with log-variances ``s_k`` trained by YOUR optimizer on this total.

    Add ``weighting.parameters()`` to the optimizer. For a fixed ``L_k`` the optimum is
    ``e^{s_k} = L_k``, i.e. the weight ``w_k = ½ e^{−s_k} = 1/(2 L_k)``: it balances scales, it does not
    judge usefulness, and it grows without bound (the total turning negative) as ``L_k → 0``.
    """

    def __init__(self, terms: Sequence[str], **kwargs: Any) -> None:
        super().__init__(terms, **kwargs)
        self.log_vars = nn.Parameter(torch.zeros(len(self.terms)))

    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        return 0.5 * torch.exp(-self.log_vars).to(values.dtype)

    def combine(self, values: Tensor, weights: Tensor) -> Tensor:
        return (weights * values).sum() + 0.5 * (self.log_vars.to(values.dtype) * self.mask(values)).sum()

    def extra_repr(self) -> str:
        return f"terms={self.terms}"
