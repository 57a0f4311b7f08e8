"""What LocoProp keeps of one layer call, and the first-step check that its local problem is the layer's.

The forward hook keeps the layer's input ŷ (with its version counter) and its output â with the
output's autograd edge, and hands the model a copy of â: an in-place op that follows the layer
(``nn.ReLU(inplace=True)``, ``out += identity``) rewrites the copy, so â and ∂L/∂â stay those of the
pre-activation. An in-place change of ŷ after the call cannot be undone cheaply; it is detected by
the version counter and is an error. At the first step, :func:`verify_layers` recomputes every
layer's pre-activation from ŷ with the solvers' own formula and compares it with the recorded â, so a
layer option or a subclass that computes something else is an error, not a silently wrong update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._layers import LocalLayer

__all__ = ["Record", "verify_layers"]


@dataclass
class Record:
    """One layer call: input ŷ (detached), its version counter at the call, the output â, and ``g`` once known."""

    inputs: torch.Tensor
    version: int
    output: torch.Tensor
    grad: torch.Tensor | None = None  # ∂L/∂â, when a backward pass went through the layer


def _tolerance(dtype: torch.dtype) -> float:
    return {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 2e-2)


def verify_layers(
    layers: Sequence[LocalLayer], inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor]
) -> None:
    """Raise when a layer's recorded output is not ``W ŷ + b`` as the solvers compute it."""
    for layer, x, out in zip(layers, inputs, outputs, strict=True):
        try:
            mine = layer.pre_activation(x.to(layer.weight.dtype))
        except RuntimeError as exc:
            raise ValueError(
                f"LocoProp layer {layer.name!r} ({type(layer.module).__name__}) cannot be recomputed from "
                f"its input ({exc}). Pass exclude=[{layer.name!r}] with other_optimizer=...."
            ) from exc
        tol = _tolerance(out.dtype)
        ref = out.detach().to(mine.dtype)
        if mine.shape != ref.shape or not torch.allclose(mine, ref, rtol=tol, atol=tol * float(ref.abs().max() + 1)):
            raise ValueError(
                f"LocoProp layer {layer.name!r} ({type(layer.module).__name__}) returned something other "
                "than its affine map W ŷ + b of its input (a subclass with its own forward, a forward hook "
                "or pre-hook that changes it), so its local problem would be wrong. Pass "
                f"exclude=[{layer.name!r}] with other_optimizer=..., or remove the hook; no parameter was "
                "changed."
            )
