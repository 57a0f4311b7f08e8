"""The layers LocoProp trains (``nn.Linear``, ``nn.Conv2d``) as matrices: pre-activation, local
weight gradient ``Σ_batch δ ŷᵀ`` and the input covariance ``Σ ŷŷᵀ`` of the closed-form solve.

Every option of the layer is honoured: a conv's ``padding="same"``/``"valid"``, asymmetric
padding and ``padding_mode`` (reflect, replicate, circular) are applied to the input once
(:meth:`LocalLayer.prepare`), as ``nn.Conv2d`` itself does, and the solvers see an unpadded conv;
``stride``, ``dilation`` and ``groups`` are passed through. A grouped conv (depthwise included) is
``groups`` independent blocks: the closed-form solvers keep one input covariance per group, so the
matrices here carry a leading group dimension (1 for everything else).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_weight

from ._activations import Activation

__all__ = ["LocalLayer", "SUPPORTED_LAYERS", "check_layer"]

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d)


def check_layer(module: nn.Module, name: str) -> None:
    """Raise a clear error when ``module`` is not a layer LocoProp can train."""
    if not isinstance(module, SUPPORTED_LAYERS):
        raise TypeError(
            f"LocoProp layer {name!r} is a {type(module).__name__}; expected nn.Linear or nn.Conv2d. "
            "Give its parameters to other_optimizer=..., or leave it out of layers=[...]."
        )


def _conv_padding(m: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int, int, int] | None, str]:
    """``(padding for the functional conv, explicit F.pad amounts or None, F.pad mode)``."""
    kh, kw = m.kernel_size
    dh, dw = m.dilation
    if m.padding == "valid":
        sym, pad = (0, 0), (0, 0, 0, 0)
    elif m.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        sym, pad = (th // 2, tw // 2), (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    else:
        ph, pw = cast(tuple[int, int], m.padding)
        sym, pad = (ph, pw), (pw, pw, ph, ph)
    symmetric = pad[0] == pad[1] and pad[2] == pad[3]
    if m.padding_mode == "zeros" and symmetric:
        return sym, None, "constant"
    return (0, 0), pad, "constant" if m.padding_mode == "zeros" else m.padding_mode


@dataclass
class LocalLayer:
    """One layer's local problem: the module, its name in the model and its transfer function."""

    name: str
    module: nn.Module
    activation: Activation
    _padding: tuple[tuple[int, int], tuple[int, int, int, int] | None, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.module, nn.Conv2d):
            self._padding = _conv_padding(self.module)

    @property
    def weight(self) -> torch.Tensor:
        w = self.module.weight
        assert isinstance(w, torch.Tensor)
        return w

    @property
    def bias(self) -> torch.Tensor | None:
        b = self.module.bias
        assert b is None or isinstance(b, torch.Tensor)
        return b

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the solvers see it: a conv's input padded once where the functional conv cannot pad it."""
        if self._padding is None or self._padding[1] is None:
            return x
        return F.pad(x, self._padding[1], mode=self._padding[2])

    def _conv_args(self) -> tuple[nn.Conv2d, tuple[int, int]]:
        m = self.module
        assert isinstance(m, nn.Conv2d) and self._padding is not None
        return m, self._padding[0]

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b`` with the current parameters (no autograd), ``x`` from :meth:`prepare`."""
        return self.apply(x, self.weight, self.bias)

    def apply(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """This layer's map with weight ``w`` and bias ``b`` in place of its own (``x`` from :meth:`prepare`)."""
        if isinstance(self.module, nn.Linear):
            return F.linear(x, w, b)
        conv, padding = self._conv_args()
        return F.conv2d(x, w, b, conv.stride, padding, conv.dilation, conv.groups)

    def grads(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(Σ δ xᵀ, Σ δ)``: the local loss's gradients for weight and bias, summed over the batch."""
        m = self.module
        gb = self.bias_grad(delta) if m.bias is not None else None
        if isinstance(m, nn.Linear):
            return delta.reshape(-1, delta.shape[-1]).t() @ x.reshape(-1, x.shape[-1]), gb
        conv, padding = self._conv_args()
        return conv2d_weight(x, conv.weight.shape, delta, conv.stride, padding, conv.dilation, conv.groups), gb

    def bias_grad(self, delta: torch.Tensor) -> torch.Tensor:
        """``Σ δ`` over every dim but the output features (the last for Linear, channels for a conv)."""
        dims = tuple(range(delta.dim() - 1)) if isinstance(self.module, nn.Linear) else (0, 2, 3)
        return delta.sum(dims)

    @property
    def groups(self) -> int:
        """Independent blocks of the weight: a grouped conv's groups, else 1."""
        return self.module.groups if isinstance(self.module, nn.Conv2d) else 1

    def gram(self, x: torch.Tensor, examples: int | None = None) -> torch.Tensor:
        """``Σ ŷ ŷᵀ`` per group, ``(groups, d, d)`` (conv: over the patches, laid out as rows, one matmul per
        group), with a ones entry for the bias. ``examples``: formed from the batch's first ``examples`` only
        and scaled by ``batch / examples``, an unbiased estimate at about that fraction of the cost (the
        whole batch when it is no larger)."""
        m = self.module
        scale = 1.0
        if examples is not None and examples < x.shape[0]:
            scale, x = x.shape[0] / examples, x[:examples]
        if isinstance(m, nn.Linear):
            rows = x.reshape(-1, x.shape[-1])[None]
        else:
            conv, padding = self._conv_args()
            cols = F.unfold(x, conv.kernel_size, conv.dilation, padding, conv.stride)  # (B, C·k·k, L)
            b, _, positions = cols.shape
            # (groups, B·L, d): the transposed copy makes one matmul, faster than contracting in place
            rows = cols.view(b, conv.groups, -1, positions).permute(1, 0, 3, 2).reshape(conv.groups, b * positions, -1)
        gram, total, count = rows.mT @ rows, rows.sum(1), float(rows.shape[1])
        if scale != 1.0:
            gram, total, count = gram.mul_(scale), total.mul_(scale), count * scale
        if m.bias is None:
            return gram
        g, d = total.shape
        out = gram.new_empty(g, d + 1, d + 1)
        out[:, :d, :d], out[:, :d, d], out[:, d, :d] = gram, total, total
        out[:, d, d] = count
        return out

    def grad_matrix(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``Σ δ ŷᵀ`` as :meth:`matrix` lays the parameters out, from the layer's backward kernel (a conv's
        patches are never laid out)."""
        gw, gb = self.grads(x, delta)
        g = self.groups
        w = gw.reshape(g, gw.shape[0] // g, -1)
        return torch.cat([w, gb.reshape(g, -1, 1)], dim=2) if gb is not None else w

    def matrix(self) -> torch.Tensor:
        """The parameters as ``(groups, outputs / groups, inputs[+1])``, bias as the last column (a copy)."""
        g = self.groups
        w = self.weight.detach().reshape(g, self.weight.shape[0] // g, -1)
        b = self.bias
        return torch.cat([w, b.detach().reshape(g, -1, 1)], dim=2) if b is not None else w.clone()

    def set_matrix(self, mat: torch.Tensor) -> None:
        """Write a matrix from :meth:`matrix` back into weight and bias."""
        b = self.bias
        n = mat.shape[2] - (1 if b is not None else 0)
        self.weight.detach().copy_(mat[:, :, :n].reshape(self.weight.shape))
        if b is not None:
            b.detach().copy_(mat[:, :, n].reshape(b.shape))
