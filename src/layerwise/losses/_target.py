"""Mean squared error of an intermediate activation to a target."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MSETarget"]

Target = Tensor | Callable[[], Tensor]


class MSETarget(nn.Module):
    """``mean((h − t)²)``: pull an intermediate activation ``h`` towards a target ``t``.

    The target is given per call (``loss(h, t)``) or fixed at construction: a tensor, or a
    zero-argument callable read at call time, e.g. ``teacher_taps.ref("fc1")`` for another model's
    tapped activation. Targets are detached by default, so no gradient reaches a teacher.
    """

    def __init__(self, target: Target | None = None, *, detach_target: bool = True) -> None:
        super().__init__()
        if target is not None and not (isinstance(target, Tensor) or callable(target)):
            raise TypeError(
                f"Invalid target: expected a tensor or a zero-argument callable, found {type(target).__name__}."
            )
        self.target, self.detach_target = target, detach_target

    def forward(self, h: Tensor, target: Tensor | None = None) -> Tensor:
        t = target if target is not None else self.target
        if t is None:
            raise ValueError("MSETarget has no target: pass one at construction or call loss(h, target).")
        if not isinstance(t, Tensor):
            t = t()
        if self.detach_target:
            t = t.detach()
        if t.shape != h.shape:
            raise ValueError(
                f"MSETarget: the activation has shape {tuple(h.shape)} but the target has shape "
                f"{tuple(t.shape)}. Project one onto the other first (e.g. an nn.Linear)."
            )
        return F.mse_loss(h, t)
