"""The z-steps of a decoupled run: Jacobi (all layers at once) or a top-down sweep.

z_j ← z_j − (z_lr / L_j) · ∂ℓ^i/∂z_j for each example i of the batch (ℓ^i its term of eq. (3)), with
L_j = μ (1 + c_{j+1}), or μ + c_{T−1} for the last hidden layer, bounding the curvature of ℓ^i in z_j
(:class:`~layerwise.decoupled._objective.Objective`). Each function takes one step's :class:`ZRun`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._context import ZRun

__all__ = ["jacobi_step", "sweep", "z_step"]


def jacobi_step(
    run: ZRun,
    total: Tensor,
    zs: dict[int, Tensor],
    idx: Tensor,
    retain: bool,
    curv: dict[int, float],
    overlap: Callable[[], None] | None = None,
) -> dict[int, Tensor]:
    """One z step: z_j − z_lr/L_j × (per-example ∂L/∂z_j), boundary gradients summed with the neighbour
    (``overlap`` runs while that exchange is in flight: the θ-step of joint mode)."""
    layers = list(zs)
    gs = torch.autograd.grad(total, [zs[j] for j in layers], retain_graph=retain, allow_unused=True)
    grads = {j: torch.zeros_like(zs[j]) if g is None else g for j, g in zip(layers, gs, strict=True)}
    curv = dict(curv)
    # both stages' gradients, and c_{j+1} from the stage that owns block j+1
    pending = [(b, b.start(grads[b.layer], idx, run.step, curv[b.layer])) for b in run.stage.boundaries]
    if overlap is not None:
        overlap()
    for boundary, handle in pending:
        grads[boundary.layer], curv[boundary.layer] = boundary.finish(handle)
    return {j: run.move(j, z, grads[j], curv[j], len(idx)) for j, z in zs.items()}


def z_step(
    run: ZRun, x: Tensor, y: Tensor, z: dict[int, Tensor], idx: Tensor, curv: dict[int, float]
) -> dict[int, Tensor]:
    """One z step from ``z`` (a fresh forward and backward), in the run's ``z_order``."""
    if run.z_order == "sweep":
        return sweep(run, x, y, z, idx, curv)
    zs = {j: v.detach().requires_grad_(True) for j, v in z.items()}
    total = sum(run.losses(x, y, zs).values(), torch.zeros((), device=x.device))
    return jacobi_step(run, total, zs, idx, False, curv)


def sweep(
    run: ZRun, x: Tensor, y: Tensor, z: dict[int, Tensor], idx: Tensor, curv: dict[int, float]
) -> dict[int, Tensor]:
    """Top-down Gauss–Seidel: z_j's step uses the NEW z_{j+1} (its own term f_j(z_{j−1}) is the old one,
    since z_{j−1} moves after it). One forward of this stage's blocks; one vjp per block."""
    mu, obj, stage = run.mu, run.objective, run.stage
    inputs = {j: v.detach().requires_grad_(True) for j, v in z.items()}
    out = {t: obj.blocks[t](x if t == 0 else inputs[t - 1]) for t in stage.blocks}
    shared = {b.layer: b for b in stage.boundaries}
    zero = torch.zeros((), device=x.device)
    new: dict[int, Tensor] = {}
    for j in sorted(stage.z_layers, reverse=True):
        grad = torch.zeros_like(inputs[j])
        if j in stage.blocks:  # own term μ L_h(f_j(z_{j−1}), z_j), as a function of the target z_j
            target = z[j].detach().requires_grad_(True)
            grad = grad + torch.autograd.grad(mu * obj.loss_h(out[j].detach(), target) + zero, target)[0]
        if j + 1 in stage.blocks:  # the next block's term, at the already updated z_{j+1}
            above = obj.loss_y(out[j + 1], y) if j + 1 == obj.T - 1 else mu * obj.loss_h(out[j + 1], new[j + 1])
            (g,) = torch.autograd.grad(above, inputs[j], allow_unused=True)
            grad = grad if g is None else grad + g
        c = curv[j]
        if j in shared:  # the other part comes from the neighbouring stage (which waits its turn)
            grad, c = shared[j].exchange(grad, idx, run.step, c)
        new[j] = run.move(j, z[j].detach(), grad, c, len(idx))
    return new
