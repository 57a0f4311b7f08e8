"""Curvature bounds of the z-step: squared Lipschitz constants of blocks, by power iteration on their weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..locoprop import activation_names, get_activation

__all__ = ["LipschitzEstimate", "activation_slope"]


def activation_slope(module: nn.Module) -> float | None:
    """The largest slope of the activation ``module`` applies, from LocoProp's activation registry (its
    curvature bound ``c ≥ f'``: sigmoid 1/4, tanh and ReLU 1), or ``None`` for a module that is none."""
    for name in activation_names():
        act = get_activation(name)
        if act.modules and isinstance(module, act.modules):
            return act.curvature
    return None


class LipschitzEstimate:
    """``c_t ≈ Lip(f_t)²``: the product over the ``nn.Linear``/``nn.Conv*d`` layers of block t of the squared
    spectral norm of the weight (a conv weight as its ``out × (in·k)`` matrix, times the kernel area: an
    upper bound for any stride). A block with no such layer counts as 1.

    Activations count as 1-Lipschitz (tanh, ReLU) unless ``activations=True``: then each activation module
    multiplies c_t by its squared largest slope (:func:`activation_slope`; sigmoid: 1/16). Both are
    upper bounds, so both z steps are safe. The default is 16× too small a step for a sigmoid block.

    One power-iteration step per call on a persistent vector per weight, started from a deterministic
    vector and run to convergence (``warmup`` steps) the first time: cheap (two mat-vecs per weight) and
    identical on every process that sees the same weights.
    """

    def __init__(self, warmup: int = 30, activations: bool = False) -> None:
        self.warmup, self.activations = warmup, activations
        self._v: dict[int, Tensor] = {}

    def _sigma_sq(self, weight: Tensor) -> float:
        w = weight.detach().flatten(1)
        v = self._v.get(id(weight))
        steps = 1
        if v is None or v.shape[0] != w.shape[1] or v.device != w.device or v.dtype != w.dtype:
            v = torch.ones(w.shape[1], dtype=w.dtype, device=w.device) / math.sqrt(w.shape[1])
            steps = self.warmup
        for _ in range(steps):
            u = w @ v
            v = w.T @ u
            norm = v.norm()
            if not float(norm) > 0:
                self._v[id(weight)] = torch.ones_like(v) / math.sqrt(v.numel())
                return 0.0
            v = v / norm
        self._v[id(weight)] = v
        return float((w @ v).pow(2).sum())

    def __call__(self, block: nn.Module) -> float:
        c = 1.0
        for m in block.modules():
            if isinstance(m, nn.Linear):
                c *= self._sigma_sq(m.weight)
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                c *= self._sigma_sq(m.weight) * math.prod(m.kernel_size)
            elif self.activations and (slope := activation_slope(m)) is not None and slope < 1.0:
                c *= slope**2
        return c
