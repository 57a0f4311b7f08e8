"""Eq. (3) of the decoupled objective, and the curvature bound of its per-example z step.

For blocks f_0 … f_{T−1}, a batch of examples i and z_{−1} = x (MAC, Carreira-Perpiñán & Wang, 2014)::

    L = mean_i L_y(f_{T−1}(z_{T−2}^i), y^i) + μ Σ_{t<T−1} mean_i L_h(f_t(z_{t−1}^i), z_t^i).

Example i's objective has curvature in z_j at most L_j = μ (1 + c_{j+1}), or μ + c_{T−1} for the last
hidden layer, with c_t ≈ Lip(f_t)² (:class:`LipschitzEstimate`): the z step z_lr / L_j is stable for
z_lr < 2 at any μ and weight scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ._curvature import LipschitzEstimate

__all__ = ["Objective", "squared_error"]


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """``L_h = ½‖ẑ − z‖²`` per example, averaged over the batch."""
    return 0.5 * (pred - target).pow(2).flatten(1).sum(1).mean()


class Objective:
    """Eq. (3) over ``blocks`` with output loss ``loss_y``, hidden loss ``loss_h`` and penalty μ (a number or a
    schedule ``step -> μ``), and the z step's curvature bound (``activation_slopes``: see
    :class:`LipschitzEstimate`)."""

    def __init__(
        self,
        blocks: nn.ModuleList,
        loss_y: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        loss_h: Literal["mse"] | Callable[[Tensor, Tensor], Tensor] = "mse",
        mu: float | Callable[[int], float] = 1.0,
        activation_slopes: bool = False,
    ) -> None:
        if isinstance(mu, (int, float)):
            if not mu > 0:
                raise ValueError(f"Invalid mu={mu}: expected > 0.")
            value = float(mu)
            mu = lambda k: value  # noqa: E731
        hidden = squared_error if loss_h == "mse" else loss_h
        if not callable(hidden):
            raise ValueError(f"Invalid loss_h={loss_h!r}: expected 'mse' or a callable (prediction, target).")
        if not isinstance(activation_slopes, bool):
            raise ValueError(f"Invalid activation_slopes={activation_slopes!r}: expected True or False.")
        self.blocks, self.loss_y, self.loss_h, self.mu_schedule = blocks, loss_y, hidden, mu
        self.squared = loss_h == "mse"
        self.lipschitz = LipschitzEstimate(activations=activation_slopes)

    @property
    def T(self) -> int:
        """The number of blocks."""
        return len(self.blocks)

    def mu(self, step: int) -> float:
        """μ at ``step``."""
        return float(self.mu_schedule(step))

    def terms(self, x: Tensor, y: Tensor, z: Mapping[int, Tensor], blocks: range, mu: float) -> dict[str, Tensor]:
        """``{"hidden{t+1}": μ·L_h(f_t(z_{t−1}), z_t), …, "output": L_y(f_{T−1}(z_{T−2}), y)}`` for ``blocks``."""
        out: dict[str, Tensor] = {}
        for t in blocks:
            inp = x if t == 0 else z[t - 1]
            if t < self.T - 1:
                out[f"hidden{t + 1}"] = mu * self.loss_h(self.blocks[t](inp), z[t])
            else:
                out["output"] = self.loss_y(self.blocks[t](inp), y)
        return out

    def curvatures(self, z_layers: list[int], owned: range) -> dict[int, float]:
        """c_{j+1} ≈ Lip(f_{j+1})² for each z layer j whose next block is in ``owned`` (else 0: the neighbouring
        stage contributes it through the boundary exchange)."""
        return {j: self.lipschitz(self.blocks[j + 1]) if j + 1 in owned else 0.0 for j in z_layers}

    def bound(self, j: int, c: float, mu: float) -> float:
        """L_j, the curvature bound of example i's objective in z_j, from c = c_{j+1}."""
        return mu + c if j == self.T - 2 else mu * (1.0 + c)
