"""The iterative solve in the eigenbasis of each layer's local Hessian (``inner_basis="eigen"``).

LocoProp-S's local problem of a layer (see :mod:`._solvers`) is a quadratic in the layer's matrix
``M = [W | b]`` with Hessian ``I ⊗ (λI + Σ ŷŷᵀ)``: the input covariance acts on the input side only.
In the covariance's eigenbasis ``Q`` (``Σ ŷŷᵀ = Q diag(s) Qᵀ``) the problem separates into one
independent coordinate per (output, eigenvector) with curvature ``λ + s_j``, so a diagonal inner rule
(Adam, RMSProp) is there exactly as well matched to the local curvature as it can be. The inner rule
runs on ``M̃ = M Q`` with the local gradient ``∇ Q`` and the step is mapped back as ``ΔM = ΔM̃ Qᵀ``.

``Q`` comes from an exponential average of the trace-normalised covariance, ``C ← βC + (1−β) Σŷŷᵀ/tr``,
formed every ``refresh_every`` steps from the current batch (the covariance the ``precond`` solver also
forms). When ``Q`` changes, the inner rule's slots that are displacements (momentum, Adam's first
moment) are carried into the new basis; squared-gradient averages are kept as they are, as SOAP does.

With one inner Adam step this is Adam in the eigenbasis of the K-FAC input factor: one-sided SOAP
(Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam") with the input covariance in
place of Shampoo's ``GᵀG``, and EKFAC's basis (George et al. 2018) on the input side.
For LocoProp-M the local Hessian is ``Σ f'(z) ŷŷᵀ + λI``; the basis is then that of its bound
``Σ ŷŷᵀ`` (the ``precond`` solver's majoriser).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from .._distributed import all_reduce_sum

__all__ = ["BASIS_KEYS", "VECTOR_SLOTS", "eigenbases", "keep_eigenbases", "require_finite", "rotate_slots"]

VECTOR_SLOTS = frozenset({"exp_avg", "momentum_buffer", "mom"})
"""Inner-rule slots that are displacements of the parameter (rotated with the basis); the others are
per-coordinate squares (kept)."""

BASIS_KEYS = ("eigen_basis", "eigen_gram", "eigen_age")
"""The state keys of a layer's basis (kept by ``reset_inner_state``)."""


def require_finite(layer: str, gram: torch.Tensor, fix: str) -> None:
    """Raise FloatingPointError naming ``layer`` when its input covariance holds NaN/inf (before any change)."""
    if not bool(torch.isfinite(gram).all()):
        raise FloatingPointError(
            f"LocoProp layer {layer!r}: its input covariance is not finite (its inputs hold NaN/inf or overflow "
            f"float32): the model diverged at an earlier step. No parameter or buffer was changed by this step. {fix}"
        )


def _fresh(state: dict[str, Any], refresh_every: int, d: int) -> bool:
    q = state.get("eigen_basis")
    return q is not None and state.get("eigen_age", 0) < refresh_every and q.shape[-1] == d


def eigenbases(
    problems: Sequence[Any],
    refresh_every: int,
    beta: float,
    group: dist.ProcessGroup | None,
    examples: int | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Each layer's ``(Q, C)``: the cached basis while fresh (``C`` is then ``None``), else the eigenvectors of
    the averaged covariance ``C`` formed now (summed over processes), before any parameter changes. A covariance
    that is not finite, or whose eigendecomposition fails, raises with nothing changed."""
    out: list[tuple[torch.Tensor, torch.Tensor | None] | None] = []
    due: list[int] = []
    for i, p in enumerate(problems):
        st = p.state.get(p.layer.weight, {})
        d = p.layer.weight[0].numel() + (p.layer.bias is not None)  # columns of layer.matrix()
        if _fresh(st, refresh_every, d):
            out.append((st["eigen_basis"], None))
        else:
            out.append(None)
            due.append(i)
    grams = [problems[i].layer.gram(problems[i].x, examples) for i in due]
    all_reduce_sum(grams, group)
    for i, gram in zip(due, grams, strict=True):
        p = problems[i]
        require_finite(p.layer.name, gram, "Lower lr or gamma.")
        trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
        c = torch.where(trace > 0, gram / trace.clamp_min(torch.finfo(gram.dtype).tiny), 0.0)  # all-zero inputs: 0
        old = p.state.get(p.layer.weight, {}).get("eigen_gram")
        if old is not None and old.shape == c.shape:
            c = old.lerp(c, 1.0 - beta)
        try:
            _, q = torch.linalg.eigh(c)
        except torch.linalg.LinAlgError as exc:  # pragma: no cover - eigh of a finite symmetric matrix converges
            raise FloatingPointError(
                f"LocoProp layer {p.layer.name!r}: the eigendecomposition of its input covariance failed ({exc}). "
                "No parameter or buffer was changed by this step."
            ) from exc
        out[i] = (q, c)
    return [b for b in out if b is not None]


def rotate_slots(slots: dict[str, Any], old: torch.Tensor, new: torch.Tensor) -> None:
    """Carry the displacement slots of an inner rule from basis ``old`` into ``new``: ``s̃' = s̃ Qᵀ Q'``."""
    turn = old.mT @ new
    for key in VECTOR_SLOTS & slots.keys():
        slots[key] = slots[key] @ turn


def keep_eigenbases(problems: Sequence[Any], bases: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Cache the bases a successful step used, and age them (a new one is one step old)."""
    for p, (q, c) in zip(problems, bases, strict=True):
        st = p.state.setdefault(p.layer.weight, {})
        if c is not None:
            st["eigen_basis"], st["eigen_gram"], st["eigen_age"] = q, c, 1
        else:
            st["eigen_age"] = st.get("eigen_age", 0) + 1
