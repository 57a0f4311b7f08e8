"""Forward-z decoupled steps in delta form: target changes kept apart from the forward activations.

With ``z_init="forward"`` every z_t starts at the forward activation a_t, and the top-down sweep adds a
change δ_t that shrinks layer by layer (÷(1 + c) per layer). Once δ_t falls under the resolution of a_t
(float32 numbers near 0.5 are 6e-8 apart), z_t = a_t + δ_t rounds back to a_t and block t's residual is
exactly 0: the deep blocks stop learning. Delta form keeps δ_t as its own tensor and evaluates every
hidden residual to first order around the forward pass,

    f_t(z_{t−1}) − z_t  ≈  J_t δ_{t−1} − δ_t,     J_t = ∂f_t/∂a_{t−1} at the forward activations,

with Jacobian-vector products, so δ keeps its relative precision at any depth. The z-step and θ-step
are those of the squared-error eq. (3) (MAC) with these residuals; the output term is exact. As δ → 0
the two forms agree, and in exact arithmetic they differ by O(‖δ‖²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._context import ZRun

__all__ = ["delta_sweeps", "delta_terms"]


class _Linearised:
    """Block t linearised at its forward input, from ONE forward kept for the whole step: J v by the
    double-vjp identity J v = ∂_u⟨Jᵀu, v⟩, and Jᵀu."""

    def __init__(self, block: torch.nn.Module, a_in: Tensor) -> None:
        self.inp = a_in.detach().requires_grad_(True)
        with torch.enable_grad():
            self.out = block(self.inp)
            self.u = torch.zeros_like(self.out, requires_grad=True)
            (self.g,) = torch.autograd.grad(self.out, self.inp, self.u, create_graph=True)

    def jvp(self, v: Tensor) -> Tensor:
        (jv,) = torch.autograd.grad(self.g, self.u, v, retain_graph=True)
        return jv.detach()

    def vjp(self, u: Tensor) -> Tensor:
        (g,) = torch.autograd.grad(self.out, self.inp, u, retain_graph=True)
        return g.detach()


def _residual(lin: dict[int, _Linearised], t: int, d: dict[int, Tensor]) -> Tensor:
    """r_t ≈ f_t(z_{t−1}) − z_t = J_t δ_{t−1} − δ_t (block 0's input x does not move)."""
    return -d[t] if t == 0 else lin[t].jvp(d[t - 1]) - d[t]


def delta_sweeps(
    run: ZRun, x: Tensor, y: Tensor, a: dict[int, Tensor], lin: dict[int, _Linearised]
) -> dict[int, Tensor]:
    """``z_steps`` top-down Gauss–Seidel sweeps of per-example z-steps, on δ (start 0); returns δ."""
    obj = run.objective
    mu, top = run.mu, obj.T - 2
    curv = run.curvatures()  # one process: every c_{j+1}
    d = {j: torch.zeros_like(a[j]) for j in range(obj.T - 1)}
    batch = x.shape[0]
    for _ in range(run.z_steps):
        new: dict[int, Tensor] = {}
        for j in range(top, -1, -1):
            grad = mu * -_residual(lin, j, d)  # own term μ(z_j − f_j(z_{j−1})), z_{j−1} not yet moved
            if j == top:  # the output term, exact: per-example ∂L_y/∂z_{T−2}
                z = (a[j] + d[j]).requires_grad_(True)
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(obj.loss_y(obj.blocks[j + 1](z), y), z)
                grad = grad + batch * g.detach()
            else:  # μ J_{j+1}ᵀ (J_{j+1} δ_j − δ_{j+1}), at the new δ_{j+1}
                grad = grad + mu * lin[j + 1].vjp(lin[j + 1].jvp(d[j]) - new[j + 1])
            new[j] = d[j] - (run.z_lr / obj.bound(j, curv[j], mu)) * grad
        d = new
    return d


def delta_terms(run: ZRun, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """This step's eq. (3) terms after the sweeps, and a surrogate whose gradient in each block's θ is that
    block's gradient of its term (μ/B Σ_i r_tᵀ ∂f_t/∂θ_t for the hidden blocks, exact for the output)."""
    obj = run.objective
    a = run.stage.forward_z(obj.blocks, x, run.step)
    lin = {t: _Linearised(obj.blocks[t], a[t - 1]) for t in range(1, obj.T - 1)}  # hidden blocks past the first
    d = delta_sweeps(run, x, y, a, lin)
    mu, batch = run.mu, x.shape[0]
    terms: dict[str, Tensor] = {}
    surrogate = torch.zeros((), device=x.device, dtype=x.dtype)
    for t in range(obj.T - 1):
        r = _residual(lin, t, d)
        terms[f"hidden{t + 1}"] = mu * 0.5 * r.pow(2).flatten(1).sum(1).mean()
        inp = x if t == 0 else a[t - 1] + d[t - 1]
        surrogate = surrogate + (mu / batch) * (obj.blocks[t](inp) * r).sum()
    out = obj.loss_y(obj.blocks[-1](a[obj.T - 2] + d[obj.T - 2]), y)
    terms["output"] = out
    return {k: v.detach() for k, v in terms.items()}, surrogate + out
