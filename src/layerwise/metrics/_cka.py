"""Linear centered kernel alignment (Kornblith, Norouzi, Lee & Hinton, ICML 2019)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["linear_cka"]


def linear_cka(x: Tensor, y: Tensor) -> float:
    """``‖Yᵀ X‖_F² / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` for column-centred representations of the same n examples.

    1 when the two representations differ by an orthogonal map and isotropic scaling; invariant to
    neither a general linear map nor a permutation of examples. ``x`` is ``(n, p)`` (further
    dimensions are flattened), ``y`` is ``(n, q)``. Computed in float64.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs the same examples in both: x has {x.shape[0]} rows, y has {y.shape[0]}.")
    if x.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 examples.")
    x = x.detach().flatten(1).double()
    y = y.detach().flatten(1).double()
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    denom = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return float(cross / denom) if float(denom) > 0 else 0.0
