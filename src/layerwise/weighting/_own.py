"""Weightings whose weights are trained on their OWN objective, by an optimizer they hold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ..terms import check_params
from ._base import Weighting

__all__ = ["SelfTrained"]

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


class SelfTrained(Weighting):
    """Base of GradNorm and Usefulness: a weight buffer ``w`` moved by an internal optimizer.

    The weights are a buffer, not parameters: do not (and you cannot) add them to the model's
    optimizer, and the model's gradients never depend on the weights' objective. The internal
    optimizer's state is part of ``state_dict``.
    """

    needs_grads = True
    w: Tensor

    def __init__(
        self,
        terms: Sequence[str],
        params: Iterable[Tensor],
        *,
        lr: float,
        optimizer: Literal["sgd", "adam"],
        init: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(terms, **kwargs)
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"Invalid optimizer={optimizer!r}. Expected one of {sorted(_OPTIMIZERS)}.")
        if not lr >= 0:
            raise ValueError(f"Invalid lr={lr}. Must be >= 0.")
        self.grad_params = check_params(params, what="params")
        self.lr, self.optimizer_name = lr, optimizer
        self.register_buffer("w", torch.full((len(self.terms),), float(init)))
        self._opt: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    def _optimizer(self) -> torch.optim.Optimizer:
        if self._opt is None or self._opt.param_groups[0]["params"][0] is not self.w:
            self._opt = _OPTIMIZERS[self.optimizer_name]([self.w], lr=self.lr)
            if self._pending is not None:
                self._opt.load_state_dict(self._pending)
                self._pending = None
        return self._opt

    def descend(self, grad: Tensor) -> None:
        """One step of the internal optimizer on ``w`` with gradient ``grad``."""
        opt = self._optimizer()
        self.w.grad = grad.to(self.w)
        opt.step()
        self.w.grad = None

    def get_extra_state(self) -> Any:
        state = super().get_extra_state()
        state["optimizer"] = self._opt.state_dict() if self._opt is not None else self._pending
        return state

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        self._opt, self._pending = None, state.get("optimizer")
