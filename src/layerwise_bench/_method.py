"""A benchmark method: how to build its optimizer and how one training step runs."""

from __future__ import annotations

import importlib.util
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
        requires: the modules it imports, checked by :meth:`check_available` before any work starts.
        scheduled: whether the harness' warm-up/decay schedule applies (Schedule-Free: no).
    """

    name: str
    summary: str
    build: Callable[..., torch.optim.Optimizer]
    default_lr: float
    hparams: dict[str, Any] = field(default_factory=dict)
    closure: ClosureFactory = standard_closure
    extra: str | None = None
    requires: tuple[str, ...] = ()
    scheduled: bool = True

    def check_available(self) -> None:
        """Raise ImportError naming the missing module and the extra to install, before any training."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                raise ImportError(
                    f"method {self.name!r} needs the package {module!r}, which is not installed: "
                    f"pip install 'layerwise[{self.extra or 'bench'}]'"
                )
