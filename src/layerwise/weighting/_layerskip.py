"""LayerSkip's early-exit loss scales and curriculum (Elhoushi et al., "LayerSkip", ACL 2024, §4.2)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._base import Weighting

__all__ = ["CURRICULA", "LayerSkip"]

CURRICULA = ("gradual", "rotational", "none")
"""LayerSkip's curricula: exits enabled deepest first over the first half of training, every ``rotation``-th
exit in turn, or every exit at every step."""


class LayerSkip(Weighting):
    """Hand-set early-exit weights: ``w_l(t) = C(t, l) e(l) / Σ_i C(t, i) e(i)`` over the exits ordered from the
    shallowest (``l = 0``) to the model's output (``l = L − 1``), which sum to 1.

    The scale grows with depth: the paper's ``e(l) = e_scale Σ_{i=0}^{l} i`` for an exit and
    ``L − 1 + e_scale Σ_{i=0}^{L−2} i`` for the output, counted here from 1 instead of 0 (as Meta's torchtune recipe
    does), so that the first exit's scale is not 0: ``e(l) = e_scale Σ_{i=1}^{l+1} i`` and
    ``e(L − 1) = L + e_scale Σ_{i=1}^{L−1} i``. (torchtune also sums only over the exits switched on; here the scales
    are fixed and the curriculum only switches them on and off, as in the paper.) The curriculum
    ``C(t, l) ∈ {0, 1}`` at step ``t`` of ``steps``:

    - ``"gradual"``: exit ``l`` is on once ``2t / steps ≥ (L − l) / L``: the deepest first, every exit by half
      of training;
    - ``"rotational"``: exit ``l`` is on when ``(l − t) mod rotation = 0``: every ``rotation``-th exit, shifted by
      one each step;
    - ``"none"``: every exit, every step.

    The output is always on. An exit switched off gets weight 0: skip computing it (:meth:`enabled` names the terms
    on at the coming step) and pass a zero tensor, e.g. ``torch.zeros(())``, in its place. The weights are a
    schedule, not learned, so no term is reported useless. Layer dropout, LayerSkip's other half, is a change to
    the model, not a weighting. Elhoushi et al., "LayerSkip: Enabling Early Exit Inference and Self-Speculative
    Decoding", ACL 2024.

    Args:
        terms: term names, the shallowest exit first.
        steps: the training length ``T`` the curriculum spans.
        output: the model's output term (default: the last of ``terms``); the others are the exits, in order.
        e_scale: the exits' scale relative to the output's (default 1).
        curriculum: one of :data:`CURRICULA` (default ``"gradual"``).
        rotation: the period of ``"rotational"`` (default 2).
    """

    steps_done: Tensor

    def __init__(
        self,
        terms: Sequence[str],
        steps: int,
        *,
        output: str | None = None,
        e_scale: float = 1.0,
        curriculum: str = "gradual",
        rotation: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(terms, **kwargs)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"Invalid steps={steps!r}: expected the training length in steps, a whole number >= 1.")
        if not (isinstance(e_scale, int | float) and math.isfinite(e_scale) and e_scale > 0):
            raise ValueError(
                f"Invalid e_scale={e_scale!r}: expected a finite number > 0 (1 scales exits like the output)."
            )
        if curriculum not in CURRICULA:
            raise ValueError(f"Invalid curriculum={curriculum!r}: expected one of {', '.join(CURRICULA)}.")
        if isinstance(rotation, bool) or not isinstance(rotation, int) or rotation < 1:
            raise ValueError(f"Invalid rotation={rotation!r}: expected a whole number >= 1 (every rotation-th exit).")
        output = self.terms[-1] if output is None else output
        if output not in self.terms:
            raise ValueError(f"Invalid output={output!r}: not one of the terms {self.terms}.")
        self.order = [t for t in self.terms if t != output] + [output]  # shallowest exit first, the output last
        self.total, self.e_scale, self.curriculum, self.rotation = steps, float(e_scale), curriculum, rotation
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def scales(self) -> dict[str, float]:
        """``e(l)`` of every term."""
        n, e = len(self.order), self.e_scale
        out = {t: e * (i + 1) * (i + 2) / 2 for i, t in enumerate(self.order[:-1])}
        return {**out, self.order[-1]: n + e * (n - 1) * n / 2}

    def enabled(self, step: int | None = None) -> list[str]:
        """The terms on at ``step`` (default: the coming step), shallowest exit first."""
        t, n = int(self.steps_done) if step is None else step, len(self.order)
        if self.curriculum == "gradual":
            on = [2 * t / self.total >= (n - i) / n for i in range(n)]
        elif self.curriculum == "rotational":
            on = [(i - t) % self.rotation == 0 for i in range(n)]
        else:
            on = [True] * n
        on[-1] = True
        return [term for term, flag in zip(self.order, on, strict=True) if flag]

    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        on, scales = set(self.enabled()), self.scales()
        raw = torch.tensor([scales[t] if t in on else 0.0 for t in self.terms]).to(values) * active
        total = raw.sum()
        if not bool(total > 0):
            raise ValueError(
                f"LayerSkip: every term its curriculum switches on at step {int(self.steps_done)} ({sorted(on)}) has "
                "been dropped, so nothing would be trained. Keep the output term (do not drop it)."
            )
        self.steps_done += 1
        return raw / total

    def useless_terms(self) -> list[str]:
        """None: a zero weight here is the curriculum's choice, not a sign the term is useless."""
        return []

    def extra_repr(self) -> str:
        return (
            f"output={self.order[-1]!r}, steps={self.total}, e_scale={self.e_scale}, curriculum={self.curriculum!r}, "
            f"rotation={self.rotation}"
        )
