"""What one step's local solves did to each layer, against the backprop step: the diagnosis of an update.

With ``LocoProp(..., record_stats=True)`` every step leaves :attr:`LocoProp.step_stats`, one
:class:`LayerStats` per layer: how far the update ``ΔW`` turned from the backprop gradient ``∇_W L``
(cosine), how large it is against it (norm ratio), the first-order loss decrease it buys
``−⟨∇_W L, ΔW⟩`` (summed over layers: the step's predicted decrease; a layer's part of it: its share), and
how much of the way to its local target the solve went (``‖r_after‖ / ‖r_before‖`` with
``r = f(W ŷ) − target``, ``r_before = γ g``: 0 = target reached, 1 = nothing done). Gradients and residuals
are this process's batch (before any all-reduce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LayerStats", "layer_stats"]


@dataclass(frozen=True)
class LayerStats:
    """One layer's update in one step (``LocoProp(..., record_stats=True)``, then ``opt.step_stats``)."""

    layer: str
    grad_norm: float  # ‖∇_W L‖ over weight and bias: the backprop gradient of the batch loss
    update_norm: float  # ‖ΔW‖ over weight and bias
    cosine: float  # cos(ΔW, −∇_W L): 1 = along the backprop step
    decrease: float  # −⟨∇_W L, ΔW⟩: the first-order loss decrease this layer's update buys
    residual_ratio: float  # ‖f(W_new ŷ) − target‖ / ‖γ g‖: what is left of the local problem

    @property
    def norm_ratio(self) -> float:
        """``‖ΔW‖ / ‖∇_W L‖``: the update's size against the gradient's (an effective learning rate)."""
        return self.update_norm / self.grad_norm if self.grad_norm > 0 else math.nan


def layer_stats(
    name: str, grad: list[torch.Tensor], before: list[torch.Tensor], after: list[torch.Tensor], residuals: tuple
) -> LayerStats:
    """Stats from the backprop gradient ``grad`` (γ removed), the parameters before and after the solve, and
    ``residuals = (r_before, r_after)``."""
    g = torch.cat([t.reshape(-1).double() for t in grad])
    d = torch.cat([(a - b).reshape(-1).double() for a, b in zip(after, before, strict=True)])
    gn, dn, dot = float(g.norm()), float(d.norm()), float(g @ d)
    r0, r1 = (float(r.double().norm()) for r in residuals)
    return LayerStats(
        layer=name,
        grad_norm=gn,
        update_norm=dn,
        cosine=-dot / (gn * dn) if gn > 0 and dn > 0 else math.nan,
        decrease=-dot,
        residual_ratio=r1 / r0 if r0 > 0 else math.nan,
    )
