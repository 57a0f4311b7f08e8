"""Fixed weights, optionally scheduled: equal weights and deep-supervision decay."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ._base import Weighting

__all__ = ["Fixed", "halving", "linear_decay", "step_decay"]


def linear_decay(steps: int) -> Callable[[int], float]:
    """Factor ``max(0, 1 − t/steps)``: companion losses fade out over ``steps`` steps (DSN-style)."""
    if steps < 1:
        raise ValueError(f"Invalid steps={steps}: expected >= 1.")
    return lambda t: max(0.0, 1.0 - t / steps)


def step_decay(at: int, factor: float = 0.0) -> Callable[[int], float]:
    """Factor 1 before step ``at`` and ``factor`` after: DSN drops its companion losses (factor 0)."""
    return lambda t: 1.0 if t < at else factor


def halving(terms: Sequence[str]) -> dict[str, float]:
    """nnU-Net's deep-supervision weights ``1/2^i`` (deepest output first), normalised to sum to 1."""
    raw = [0.5**i for i in range(len(terms))]
    return {t: r / sum(raw) for t, r in zip(terms, raw, strict=True)}


class Fixed(Weighting):
    """``Σ_k w_k s(t) L_k`` with constant weights ``w_k``, and for every term except ``main`` an
    optional schedule factor ``s(t)`` of the step count ``t`` (:func:`linear_decay`, :func:`step_decay`).

    ``Fixed.equal(terms)`` is the equal-weight baseline (a strong one: compare learned weightings
    against it over several seeds). nnU-Net uses ``weights=halving(terms)``.
    """

    base: Tensor
    steps: Tensor

    def __init__(
        self,
        weights: Mapping[str, float],
        *,
        main: str | None = None,
        schedule: Callable[[int], float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(list(weights), **kwargs)
        if main is not None and main not in weights:
            raise ValueError(f"Invalid main={main!r}: not one of the terms {list(weights)}.")
        for k, v in weights.items():
            if not v >= 0:
                raise ValueError(f"Invalid weight {k}={v}: expected a number >= 0.")
        self.main, self.schedule = main, schedule
        self.register_buffer("base", torch.tensor([float(weights[t]) for t in self.terms]))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def equal(cls, terms: Sequence[str], **kwargs: Any) -> Fixed:
        """Every weight 1."""
        if isinstance(terms, str):
            raise TypeError(f"Invalid terms={terms!r}: expected a list of term names, e.g. ['main', 'aux1'].")
        return cls(dict.fromkeys(terms, 1.0), **kwargs)

    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        w = self.base.to(values)
        if self.schedule is not None:
            factor = float(self.schedule(int(self.steps)))
            w = torch.stack([wk if t == self.main else wk * factor for t, wk in zip(self.terms, w, strict=True)])
        self.steps += 1
        return w

    def extra_repr(self) -> str:
        return f"weights={dict(zip(self.terms, self.base.tolist(), strict=True))}, main={self.main!r}"
