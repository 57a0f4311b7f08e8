"""Solvers of LocoProp's per-layer local problems, all layers at once.

Local problem of layer m (Amid et al. 2022, eq. 3), inputs ``ŷ`` and targets fixed from one forward
and one activation-gradient backward pass:

    min_W  Σ_batch ℓ(W ŷ; target) + (λ/2)‖W − W_m‖²,     ∇ = Σ δ ŷᵀ + λ(W − W_m),
    δ = z − (â − γg)  (S: squared loss on pre-activations),   δ = f(z) − (f(â) − γg)  (M).

At ``W = W_m`` the residual is ``δ = γg`` for both variants, so the first gradient is ``γ ∇_W L``.

- ``iterative``: T steps of an inner update rule (official: TF1 RMSProp with the learning rate
  decayed as ``lr · max(1 − k/T, floor)``); the proximal term is implicit unless ``damping > 0``.
  With ``inner_chunks = n`` step k sees only slice ``k mod n`` of the batch (gradient scaled by
  batch/slice; the proximal term is not): a stochastic solve of the same problem at about 1/n of the
  cost per step, each step's gradient unbiased when the batches are shuffled.
- ``exact`` (S): the closed form ``ΔW = −γ ∇_W L (λI + Σ ŷŷᵀ)⁻¹`` (with a ones column for the bias),
  the FOOF / exact ProxProp update, scaled by ``lr``.
- ``precond`` (S or M): T majorise-minimise steps ``W ← W − lr·∇ (λI + c Σ ŷŷᵀ)⁻¹`` with ``c ≥ f'``
  the activation's curvature bound: the local Hessian ``Σ f'(z) ŷŷᵀ + λI`` is below the
  preconditioner, so ``lr ≤ 1`` steps never increase the local loss; for S one step is exact.

A grouped conv is ``groups`` independent blocks of rows: one covariance per group (batched), and the
bound above still holds group by group (the local Hessian is below ``c·blockdiag(Σ ŷ_g ŷ_gᵀ)``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch.profiler import record_function

from .._distributed import all_reduce_sum
from ..optim._newton_schulz import newton_schulz
from ._eigenbasis import require_finite, rotate_slots
from ._inner import INNER_RULES
from ._layers import LocalLayer

__all__ = [
    "Problem",
    "keep_preconditioners",
    "parameters_of",
    "preconditioners",
    "solve_iterative",
    "solve_preconditioned",
]


@dataclass
class Problem:
    """One layer's local problem for the current batch."""

    layer: LocalLayer
    group: dict[str, Any]
    state: dict[Any, Any]  # the optimizer's per-parameter state
    x: torch.Tensor  # layer input ŷ (fixed)
    z0: torch.Tensor  # â, the pre-activation at the batch's weights
    delta0: torch.Tensor  # γg, the residual at the current weights
    matching: bool  # True: M (apply f); False: S
    x_low: torch.Tensor | None = None  # ŷ in LocoProp's inner_dtype, when that differs from ŷ's
    w0: list[torch.Tensor] | None = None  # the batch's weights (and bias) (with x_low)

    @functools.cached_property
    def target(self) -> torch.Tensor:
        """``â − γg`` (S) or ``f(â) − γg`` (M); formed on first use (a one-step solve starts at ``delta0``)."""
        return (self.layer.activation.fn(self.z0) if self.matching else self.z0) - self.delta0

    def residual(self, k: int) -> torch.Tensor:
        if k == 0:
            return self.delta0
        if self.x_low is None:
            z = self.layer.pre_activation(self.x)
        else:
            # z = â + ΔW ŷ + Δb: the low-precision product is of the small change only, so its rounding
            # is relative to ΔW ŷ, not to z (the residual f(z) − f(â) + γg cancels most of z).
            assert self.w0 is not None
            low = self.x_low.dtype
            dw = (self.layer.weight - self.w0[0]).to(low)
            b = self.layer.bias
            db = None if b is None else (b - self.w0[1]).to(low)
            z = self.z0 + self.layer.apply(self.x_low, dw, db).to(self.z0.dtype)
        return (self.layer.activation.fn(z) if self.matching else z) - self.target

    def split(self, n: int) -> list[tuple[Problem, float]]:
        """The problem on each of ``n`` contiguous, near-equal slices of the batch (views), with the factor
        ``batch / slice rows`` that makes a slice's gradient an unbiased estimate of the whole batch's."""
        if n == 1:
            return [(self, 1.0)]
        rows, parts, start = self.x.shape[0], [], 0
        for j in range(n):
            s = slice(start, start + rows // n + (1 if j < rows % n else 0))
            start = s.stop
            part = replace(
                self,
                x=self.x[s],
                z0=self.z0[s],
                delta0=self.delta0[s],
                x_low=None if self.x_low is None else self.x_low[s],
            )
            parts.append((part, rows / (s.stop - s.start)))
        return parts

    def grads(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The local loss's weight and bias gradients at residual ``delta`` (products in ``x_low``'s dtype)."""
        if self.x_low is None:
            return self.layer.grads(self.x, delta)
        gw, gb = self.layer.grads(self.x_low, delta.to(self.x_low.dtype))
        return gw.to(self.x.dtype), (None if gb is None else self.layer.bias_grad(delta))


def parameters_of(p: Problem) -> list[torch.Tensor]:
    return [p.layer.weight] + ([p.layer.bias] if p.layer.bias is not None else [])


def solve_iterative(
    problems: Sequence[Problem],
    rule: str,
    options: dict[str, Any],
    decay: bool,
    floor: float,
    group: dist.ProcessGroup | None,
    chunks: int = 1,
    bases: Sequence[tuple[torch.Tensor, torch.Tensor | None]] | None = None,
) -> None:
    """T inner steps of ``rule`` on every layer; gradients of all layers summed across processes in one call.
    With ``chunks > 1`` step k uses slice ``k mod chunks`` of the batch, its gradient scaled to the batch.
    With ``bases`` (from :func:`~._eigenbasis.eigenbases`) the rule runs on each layer's matrix in its basis."""
    update = INNER_RULES[rule]
    parts = [p.split(chunks) for p in problems]
    if bases is not None:
        for p, (q, fresh) in zip(problems, bases, strict=True):
            slot = p.state.setdefault(p.layer.weight, {})
            old = slot.get("eigen_basis")
            if fresh is not None and old is not None and "eigen_inner" in slot and old.shape == q.shape:
                rotate_slots(slot["eigen_inner"], old, q)
    anchors: list[list[torch.Tensor] | None] = [
        ([p.layer.matrix()] if bases is not None else [t.detach().clone() for t in parameters_of(p)])
        if p.group["damping"] > 0
        else None
        for p in problems
    ]
    for k in range(max(p.group["steps"] for p in problems)):
        active = [(i, p) for i, p in enumerate(problems) if k < p.group["steps"]]
        grads = []
        for i, p in active:
            part, factor = parts[i][k % chunks]
            with record_function(f"LocoProp.layer.{p.layer.name}"):
                if bases is None:
                    gs = [g for g in part.grads(part.residual(k)) if g is not None]
                else:
                    gs = [part.layer.grad_matrix(part.x, part.residual(k))]
            grads.append([g.mul_(factor) for g in gs] if factor != 1.0 else gs)
        all_reduce_sum([g for gs in grads for g in gs], group)
        for (i, p), gs in zip(active, grads, strict=True):
            steps, lam = p.group["steps"], p.group["damping"]
            lr = p.group["lr"] * (max(1.0 - k / steps, floor) if decay else 1.0)
            anchor = anchors[i]
            if bases is not None:
                _rotated_step(p, gs[0], bases[i][0], anchor, update, lr, options)
                continue
            for j, (t, g) in enumerate(zip(parameters_of(p), gs, strict=True)):
                if anchor is not None:
                    g.add_(t.detach() - anchor[j], alpha=lam)
                update(t.detach(), g, p.state.setdefault(t, {}), lr, options)


def _rotated_step(
    p: Problem,
    g: torch.Tensor,
    q: torch.Tensor,
    anchor: list[torch.Tensor] | None,
    update: Any,
    lr: float,
    options: dict[str, Any],
) -> None:
    """One inner step on ``M̃ = M Q``: the rule moves a zero displacement by the rotated gradient ``(∇ + λ(M − M₀)) Q``
    (no rule reads the parameter's value), and ``M ← M + ΔM̃ Qᵀ``."""
    mat = p.layer.matrix()
    if anchor is not None:
        g.add_(mat - anchor[0], alpha=p.group["damping"])
    move = torch.zeros_like(mat)
    update(move, g @ q, p.state.setdefault(p.layer.weight, {}).setdefault("eigen_inner", {}), lr, options)
    p.layer.set_matrix(mat.add_(move @ q.mT))


def _inverse(p: Problem, refresh_every: int) -> torch.Tensor | None:
    """The cached ``(λI + c XᵀX)⁻¹`` if still fresh, else ``None``."""
    cache = p.state.get(p.layer.weight, {})  # looked up, not created: a failed step leaves no empty slot
    inv = cache.get("precond_inverse")
    dim = p.layer.weight[0].numel() + (p.layer.bias is not None)  # columns of layer.matrix()
    if inv is not None and cache.get("precond_age", 0) < refresh_every and inv.shape[-1] == dim:
        return inv
    return None


def _refresh(
    problems: Sequence[Problem],
    fresh: list[int],
    inverses: list[torch.Tensor | None],
    group: dist.ProcessGroup | None,
    examples: int | None,
) -> None:
    """Form ``(λI + c Σ ŷŷᵀ)⁻¹`` for the layers in ``fresh`` (summed over processes; ``Σ`` from the batch's
    first ``examples``, scaled) and cache it."""
    grams = [problems[i].layer.gram(problems[i].x, examples) for i in fresh]  # (groups, d, d)
    all_reduce_sum(grams, group)
    for i, gram in zip(fresh, grams, strict=True):
        p = problems[i]
        require_finite(p.layer.name, gram, "Lower lr or gamma, or raise damping.")
        c = p.layer.activation.curvature if p.matching else 1.0
        gram.mul_(c).diagonal(dim1=-2, dim2=-1).add_(p.group["damping"])
        chol, info = torch.linalg.cholesky_ex(gram)
        if bool(info.any()):
            scale = float(gram.diagonal(dim1=-2, dim2=-1).abs().max())
            raise FloatingPointError(
                f"LocoProp layer {p.layer.name!r}: the damped input covariance is not positive definite in "
                f"{gram.dtype} (damping={p.group['damping']}, largest diagonal entry {scale:.3g}"
                + (
                    ": the layer's inputs have grown so large that the damping is lost in rounding, a model "
                    "diverging). No parameter or buffer was changed by this step. Lower lr or gamma, or raise damping."
                    if scale > 1e6 * p.group["damping"]
                    else "). No parameter or buffer was changed by this step. Raise damping."
                )
            )
        inverses[i] = torch.cholesky_inverse(chol)


def preconditioners(
    problems: Sequence[Problem], refresh_every: int, group: dist.ProcessGroup | None, examples: int | None = None
) -> list[torch.Tensor]:
    """Every layer's ``(λI + c Σ ŷŷᵀ)⁻¹``: the cached one while fresh, else formed now, before any parameter
    changes (a covariance that is not finite or not positive definite fails the step with nothing changed).
    The optimizer state is updated by :func:`keep_preconditioners` once the step has succeeded."""
    inverses: list[torch.Tensor | None] = [_inverse(p, refresh_every) for p in problems]
    with record_function("LocoProp.covariance"):
        _refresh(problems, [i for i, inv in enumerate(inverses) if inv is None], inverses, group, examples)
    return [inv for inv in inverses if inv is not None]


def keep_preconditioners(problems: Sequence[Problem], inverses: Sequence[torch.Tensor]) -> None:
    """Cache the inverses a successful step used, and age them (one step older; a new one is one step old)."""
    for p, inv in zip(problems, inverses, strict=True):
        cache = p.state.setdefault(p.layer.weight, {})
        fresh = cache.get("precond_inverse") is not inv
        cache["precond_inverse"], cache["precond_age"] = inv, 1 if fresh else cache.get("precond_age", 0) + 1


def solve_preconditioned(
    problems: Sequence[Problem], inverses: Sequence[torch.Tensor], steps: int | None, group: dist.ProcessGroup | None
) -> None:
    """Closed-form (``steps=1``, S) or majorise-minimise (``steps=None``: each group's T) solves.

    ``inverses`` come from :func:`preconditioners` (the input covariance formed only when a layer's cached
    inverse is due, ``refresh_every``), and the local gradient ``Σ δ ŷᵀ`` comes from the layer's own backward
    kernel, so a step between refreshes costs about a weight-gradient pass."""
    anchors = [p.layer.matrix() for p in problems]
    for k in range(max(steps or p.group["steps"] for p in problems)):
        active = [i for i, p in enumerate(problems) if k < (steps or p.group["steps"])]
        grads = []
        for i in active:
            with record_function(f"LocoProp.layer.{problems[i].layer.name}"):
                grads.append(problems[i].layer.grad_matrix(problems[i].x, problems[i].residual(k)))
        all_reduce_sum(grads, group)
        for i, g in zip(active, grads, strict=True):
            p = problems[i]
            mat = p.layer.matrix()
            if k > 0:
                g.add_(mat - anchors[i], alpha=p.group["damping"])
            p.layer.set_matrix(mat.sub_(_outer(p, g @ inverses[i]), alpha=p.group["lr"]))


def _outer(p: Problem, direction: torch.Tensor) -> torch.Tensor:
    """The solve's step with the layer's outer ``momentum`` β (Muon's Nesterov form on an average,
    ``m ← βm + (1−β)d``, step ``(1−β)d + βm``) and, with ``orthogonalize``, Muon's Newton–Schulz: the step
    becomes ``√max(1, rows/cols) · msgn(·)``, each group's ``(rows, cols)`` matrix with its bias column (Newton-Muon,
    Du & Su 2026, right-preconditions Muon's step by the inverse input second moment the same way)."""
    beta, ortho = p.group.get("momentum", 0.0), p.group.get("orthogonalize", False)
    if beta:
        slot = p.state.setdefault(p.layer.weight, {})
        buf = slot.get("outer_momentum")
        if buf is None or buf.shape != direction.shape:
            buf = slot["outer_momentum"] = torch.zeros_like(direction)
        buf.lerp_(direction, 1 - beta)
        direction = direction.lerp(buf, beta)
    if ortho:
        rows, cols = direction.shape[-2:]
        direction = newton_schulz(direction, dtype=direction.dtype).mul_(math.sqrt(max(1.0, rows / cols)))
    return direction
