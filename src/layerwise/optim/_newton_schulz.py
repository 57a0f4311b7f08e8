"""The quintic Newton–Schulz iteration Muon uses to orthogonalise an update (Jordan et al. 2024,
``torch.optim.Muon``): ``X ← aX + (bA + cA²)X`` with ``A = XXᵀ``, from ``X = G/‖G‖_F``, five times, which maps
``G = USVᵀ`` to about ``UVᵀ`` (singular values pushed into roughly [0.7, 1.2], not exactly 1)."""

from __future__ import annotations

import torch

__all__ = ["NS_COEFFICIENTS", "NS_EPS", "newton_schulz"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's defaults (Keller Jordan's constants)
NS_EPS = 1e-7


def newton_schulz(
    grad: torch.Tensor,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    ns_steps: int = 5,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """The iteration on ``grad`` (2-D, or a batch ``(..., m, n)`` of matrices, each normalised on its own),
    computed and returned in ``dtype``. On a 2-D ``grad`` with ``torch.bfloat16`` it is torch's
    ``_zeropower_via_newtonschulz`` operation for operation; ``torch.float32`` where the hardware has no
    native bfloat16."""
    if grad.ndim not in (2, 3):
        raise ValueError(f"newton_schulz needs a matrix or a batch of matrices, found shape {tuple(grad.shape)}.")
    a, b, c = ns_coefficients
    x = grad.to(dtype, copy=True)  # a copy even in the same dtype: the in-place norm below must not touch grad
    tall = grad.size(-2) > grad.size(-1)
    if tall:
        x = x.mT
    norm = x.norm() if x.ndim == 2 else torch.linalg.matrix_norm(x, keepdim=True)
    x.div_(norm.clamp(min=eps))  # spectral norm at most 1
    mm = torch.addmm if x.ndim == 2 else torch.baddbmm
    for _ in range(ns_steps):
        gram = x @ x.mT
        x = mm(x, mm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x
