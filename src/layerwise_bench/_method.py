"""A benchmark method: how to build its optimizer and how one training step runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LossFn", "Method", "standard_closure"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ClosureFactory = Callable[
    [torch.optim.Optimizer, nn.Module, LossFn, torch.Tensor, torch.Tensor], Callable[[], torch.Tensor]
]


def standard_closure(
    opt: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, target: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """``zero_grad``, forward, loss, ``backward``; returns the loss (the usual PyTorch step)."""

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), target)
        loss.backward()
        return loss

    return closure


@dataclass(frozen=True)
class Method:
    """An entry of the benchmark registry.

    Args:
        name: registry key (``--methods`` on the command line).
        summary: one line for reports and ``--help``.
        build: ``build(model, lr, **hparams) -> torch.optim.Optimizer``.
        default_lr: learning rate used when the tuned-values file has none.
        hparams: other hyper-parameters passed to ``build`` (recorded in results).
        closure: makes the closure given to ``optimizer.step`` for one batch.
        extra: the pip extra it needs, named in the error when its package is missing.
    """

    name: str
    summary: str
    build: Callable[..., torch.optim.Optimizer]
    default_lr: float
    hparams: dict[str, Any] = field(default_factory=dict)
    closure: ClosureFactory = standard_closure
    extra: str | None = None
