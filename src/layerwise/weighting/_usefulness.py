"""Weights for auxiliary losses learned from the MAIN loss: cosine gating and one-step look-ahead."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ._own import SelfTrained

__all__ = ["Usefulness"]


def _dot(a: list[Tensor | None], b: list[Tensor | None]) -> Tensor:
    """⟨a, b⟩ over a parameter list; ``None`` entries are zero gradients."""
    return sum(
        (
            torch.dot(x.reshape(-1).double(), y.reshape(-1).double())
            for x, y in zip(a, b, strict=True)
            if x is not None and y is not None
        ),
        torch.zeros((), dtype=torch.float64),
    )


class Usefulness(SelfTrained):
    """Auxiliary weights ``w_i ≥ 0`` that grow when term ``i``'s gradient helps the main loss.

    ``g_m = ∇_θ L_main`` and ``g_i = ∇_θ L_i`` on the shared parameters ``θ``. The main weight is 1.

    * ``mode="lookahead"`` (OL-AUX, Lin et al., NeurIPS 2019; Auto-Lambda): after one step
      ``θ' = θ − η Σ_j w_j g_j``, ``∂L_main(θ')/∂w_i ≈ −η ⟨g_m, g_i⟩``. This hypergradient (η folded
      into ``lr``) is averaged over ``every`` steps, then the internal optimizer takes one step and
      the weights are clipped at 0.
    * ``mode="cosine"`` (Du et al., 2018): ``w_i ← β w_i + (1 − β) max(0, cos(g_m, g_i))``, a running
      average of the gate.

    ``total`` (optional) rescales the auxiliary weights after every update so that they sum to
    ``total``: the weighting then only redistributes a fixed budget (compare it with equal weights
    of the same sum). Without it the look-ahead weights are unbounded, and growing weights act as
    a larger learning rate.

    A weight that stays at 0 is reported as "this loss contributes nothing; consider removing it".

    Warning:
        Both modes judge an auxiliary term by its alignment with the MAIN gradient. Where the main
        gradient is the broken part (a deep plain net whose main gradient vanishes in the lower
        layers: the very case deep supervision is for), the alignment is ~0 and the gates close on
        the terms the network needs (measured in ``benchmarks/aux-deep-mlp-mnist-cpu``).

    Args:
        terms: term names, ``main`` among them.
        params: the shared parameters ``θ`` (those the auxiliary terms reach and the main term uses).
        main: the main term.
        mode: ``"lookahead"`` (default) or ``"cosine"``.
        lr: internal optimizer step (look-ahead). every: steps averaged per update (look-ahead).
        beta: running-average factor (cosine). init: initial auxiliary weight.
        total: if given, the auxiliary weights are rescaled to sum to it after each update.
    """

    accum: Tensor
    count: Tensor

    def __init__(
        self,
        terms: Sequence[str],
        params: Iterable[Tensor],
        *,
        main: str,
        mode: Literal["lookahead", "cosine"] = "lookahead",
        lr: float = 0.01,
        every: int = 1,
        beta: float = 0.9,
        init: float = 1.0,
        optimizer: Literal["sgd", "adam"] = "adam",
        total: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(terms, params, lr=lr, optimizer=optimizer, init=init, **kwargs)
        if main not in self.terms:
            raise ValueError(f"Invalid main={main!r}: not one of the terms {self.terms}.")
        if mode not in ("lookahead", "cosine"):
            raise ValueError(f"Invalid mode={mode!r}. Expected 'lookahead' or 'cosine'.")
        if every < 1 or not 0 <= beta < 1:
            raise ValueError(f"Invalid every={every} or beta={beta}: expected every >= 1 and 0 <= beta < 1.")
        if total is not None and not total > 0:
            raise ValueError(f"Invalid total={total}: expected a number > 0, or None.")
        self.main, self.mode, self.every, self.beta, self.total = main, mode, every, beta, total
        self.register_buffer("accum", torch.zeros(len(self.terms)))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        with torch.no_grad():
            self.w[self.terms.index(main)] = 1.0

    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        assert grads is not None
        m = self.terms.index(self.main)
        w_now = self.w.detach().clone().to(values.dtype)
        g_m = grads[m]
        dots = torch.stack([_dot(g_m, g) for g in grads])
        if self.mode == "cosine":
            norms = torch.stack([_dot(g, g).sqrt() for g in grads])
            cos = dots / (norms * norms[m]).clamp_min(1e-30)
            with torch.no_grad():
                self.w.mul_(self.beta).add_((1 - self.beta) * cos.clamp_min(0).to(self.w))
        else:
            self.accum += dots.to(self.accum)
            self.count += 1
            if int(self.count) == self.every:
                self.descend(-self.accum / self.every)
                self.accum.zero_()
                self.count.zero_()
                self.w.clamp_(min=0)
        with torch.no_grad():
            self.w[m] = 1.0
            if self.total is not None:
                aux = torch.ones_like(self.w, dtype=torch.bool)
                aux[m] = False
                aux &= active.bool().to(aux.device)
                s = self.w[aux].sum()
                self.w[aux] = self.w[aux] * (self.total / s) if s > 0 else self.total / max(int(aux.sum()), 1)
        return w_now

    def extra_repr(self) -> str:
        total = f", total={self.total}" if self.total is not None else ""
        return (
            f"terms={self.terms}, main={self.main!r}, mode={self.mode!r}, lr={self.lr}, every={self.every}, "
            f"beta={self.beta}{total}"
        )
