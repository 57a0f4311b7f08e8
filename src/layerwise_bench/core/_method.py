"""A benchmark method: how to build its optimizer and how one training step runs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    """An entry of the benchmark registry: ``build(model, lr, **hparams)`` makes its optimizer, ``closure`` the closure
    of one batch; ``requires``/``extra`` name what it imports; ``hardware_fallback`` replaces ``hparams`` where the CPU
    has no native bfloat16 (:meth:`for_machine`, which sets ``path``)."""

    name: str
    summary: str
    build: Callable[..., torch.optim.Optimizer]
    default_lr: float
    hparams: dict[str, Any] = field(default_factory=dict)
    closure: ClosureFactory = standard_closure
    extra: str | None = None
    requires: tuple[str, ...] = ()
    scheduled: bool = True
    hardware_fallback: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def __post_init__(self) -> None:
        # A copy whose hparams no longer hold the fallback (``--set ns_dtype=bfloat16`` after for_machine) no
        # longer runs the fallback path: drop its text, so that the record does not claim it.
        if self.path and any(self.hparams.get(k) != v for k, v in self.hardware_fallback.items()):
            object.__setattr__(self, "summary", self.summary.removesuffix(f"; {self.path}"))
            object.__setattr__(self, "path", "")

    def check_available(self) -> None:
        """Raise ImportError naming the missing module and the extra to install, before any training."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                raise ImportError(
                    f"method {self.name!r} needs the package {module!r}, which is not installed: "
                    f"pip install 'layerwise[{self.extra or 'bench'}]'"
                )

    def for_machine(self, device: torch.device | str = "cpu") -> Method:
        """This method as it runs on ``device``: itself where ``device`` multiplies bfloat16 natively (every
        GPU; a CPU with AVX512-BF16 or AMX) or it has no ``hardware_fallback``; else a copy with the fallback
        merged into ``hparams`` and ``path`` saying so (e.g. Muon's Newton–Schulz in float32: emulated
        bfloat16 products take tens of times longer)."""
        if not self.hardware_fallback or self.path:
            return self
        from ._machine import native_bf16

        if native_bf16(device):
            return self
        changed = ", ".join(f"{k}={v} (not {self.hparams.get(k)})" for k, v in self.hardware_fallback.items())
        path = f"{changed}: this CPU has no native bfloat16"
        return replace(
            self,
            hparams={**self.hparams, **self.hardware_fallback},
            path=path,
            summary=f"{self.summary}; {path}",
        )
