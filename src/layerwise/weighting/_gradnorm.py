"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ._own import SelfTrained

__all__ = ["GradNorm"]


class GradNorm(SelfTrained):
    """Weights that equalise the terms' gradient norms on a shared parameter set ``W``, adjusted by
    how fast each term trains.

    With ``G_i = ‖∇_W w_i L_i‖ = w_i ‖∇_W L_i‖``, ``Ḡ = mean_i G_i``, ``L̃_i = L_i(t)/L_i(0)`` (``L_i(0)``
    from the first step) and ``r_i = L̃_i / mean_j L̃_j``, the weights descend
    ``L_grad = Σ_i |G_i − Ḡ r_i^α|`` with the target ``Ḡ r_i^α`` held constant, as in the paper. The
    gradient is exact and needs no second-order graph: ``∂L_grad/∂w_i = sign(G_i − T_i) ‖∇_W L_i‖``.
    It goes to the weights only; the model's gradient is ``Σ w_i ∇L_i`` with this step's weights.
    After the step the weights are clipped at ``1e-6`` and renormalised to ``Σ w_i = K``.

    Warning:
        GradNorm equalises gradient norms on ``W``; it does not know which term matters. In a deep
        plain net whose main gradient vanishes below the top, it raises the main weight and starves
        the auxiliary heads the lower layers depend on (measured in ``benchmarks/aux-deep-mlp-mnist-cpu``).

    Args:
        terms: term names.
        params: ``W``, usually the last layer shared by every term.
        alpha: the restoring-force strength α (paper: 1.5; 0 equalises the norms only).
        lr: step size of the weights' optimizer (paper: the network's; default 0.025).
        optimizer: ``"adam"`` (default) or ``"sgd"``.
    """

    initial: Tensor

    def __init__(
        self,
        terms: Sequence[str],
        params: Iterable[Tensor],
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        optimizer: Literal["sgd", "adam"] = "adam",
        **kwargs: Any,
    ) -> None:
        super().__init__(terms, params, lr=lr, optimizer=optimizer, **kwargs)
        if not alpha >= 0:
            raise ValueError(f"Invalid alpha={alpha}. Must be >= 0.")
        self.alpha = alpha
        self.register_buffer("initial", torch.full((len(self.terms),), float("nan")))

    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        assert grads is not None
        unreached = [
            t for t, gs, a in zip(self.terms, grads, active.tolist(), strict=True) if a and all(g is None for g in gs)
        ]
        if unreached:
            raise ValueError(
                f"GradNorm: loss term(s) {unreached} do not depend on its parameter set W, so their gradient "
                "norm on W is undefined and GradNorm cannot balance them (it would collapse the others' weights "
                "instead). Pass a W every term reaches, usually the last layer they share, or leave those terms "
                "out of GradNorm's terms. Nothing was changed."
            )
        w_now = self.w.detach().clone().to(values.dtype)
        if torch.isnan(self.initial).any():
            self.initial.copy_(torch.where(torch.isnan(self.initial), values.to(self.initial), self.initial))
        norms = torch.stack(
            [
                torch.sqrt(
                    sum(((g.double() ** 2).sum() for g in gs if g is not None), torch.zeros((), dtype=torch.float64))
                )
                for gs in grads
            ]
        ).to(values.dtype)
        on = active.bool()
        g = w_now * norms
        g_mean = g[on].mean()
        ratio = values / self.initial.to(values)
        r = ratio / ratio[on].mean()
        target = g_mean * r.clamp_min(0) ** self.alpha
        self.descend(torch.where(on, torch.sign(g - target) * norms, torch.zeros_like(norms)))
        with torch.no_grad():
            self.w.clamp_(min=1e-6)
            self.w.mul_(active.to(self.w))
            self.w.mul_(int(on.sum()) / self.w.sum())
        return w_now

    def extra_repr(self) -> str:
        return f"terms={self.terms}, alpha={self.alpha}, lr={self.lr}, optimizer={self.optimizer_name!r}"
