"""The layers LocoProp trains (``nn.Linear``, ``nn.Conv2d``) as matrices: pre-activation, local
weight gradient ``Σ_batch δ ŷᵀ`` and the input features of the closed-form solve."""

from __future__ import annotations

from dataclasses import dataclass

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
        raise TypeError(f"LocoProp layer {name!r} is a {type(module).__name__}; expected nn.Linear or nn.Conv2d. "
                        "Give its parameters to other_optimizer=..., or leave it out of layers=[...].")
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise ValueError(f"LocoProp layer {name!r} uses padding_mode={module.padding_mode!r}; only 'zeros' is "
                         "supported. Use padding_mode='zeros' or give the layer to other_optimizer=....")


@dataclass
class LocalLayer:
    """One layer's local problem: the module, its name in the model and its transfer function."""

    name: str
    module: nn.Module
    activation: Activation

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

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b`` with the current parameters (no autograd)."""
        m = self.module
        if isinstance(m, nn.Linear):
            return F.linear(x, m.weight, m.bias)
        assert isinstance(m, nn.Conv2d)
        return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)

    def grads(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(Σ δ xᵀ, Σ δ)``: the local loss's gradients for weight and bias, summed over the batch."""
        m = self.module
        if isinstance(m, nn.Linear):
            d = delta.reshape(-1, delta.shape[-1])
            gw = d.t() @ x.reshape(-1, x.shape[-1])
            return gw, (d.sum(0) if m.bias is not None else None)
        assert isinstance(m, nn.Conv2d)
        gw = conv2d_weight(x, m.weight.shape, delta, m.stride, m.padding,  # type: ignore[arg-type]
                           m.dilation, m.groups)
        return gw, (delta.sum((0, 2, 3)) if m.bias is not None else None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input rows ``ŷ`` of the layer as a matrix (conv: unfolded patches), with a ones column for the bias."""
        m = self.module
        if isinstance(m, nn.Linear):
            rows = x.reshape(-1, x.shape[-1])
        else:
            assert isinstance(m, nn.Conv2d)
            if m.groups != 1:
                raise ValueError(f"LocoProp layer {self.name!r}: the closed-form solvers need groups=1 convolutions "
                                 f"(found groups={m.groups}). Use solver='iterative' for it.")
            cols = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # type: ignore[arg-type]  # (B, C*k*k, L)
            rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        if m.bias is not None:
            rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
        return rows

    def delta_rows(self, delta: torch.Tensor) -> torch.Tensor:
        """``δ`` as a (rows × outputs) matrix matching :meth:`features`."""
        if isinstance(self.module, nn.Linear):
            return delta.reshape(-1, delta.shape[-1])
        return delta.flatten(2).transpose(1, 2).reshape(-1, delta.shape[1])

    def matrix(self) -> torch.Tensor:
        """The parameters as one (outputs × inputs[+1]) matrix, bias as the last column (a copy)."""
        w = self.weight.detach().reshape(self.weight.shape[0], -1)
        b = self.bias
        return torch.cat([w, b.detach()[:, None]], dim=1) if b is not None else w.clone()

    def set_matrix(self, mat: torch.Tensor) -> None:
        """Write a matrix from :meth:`matrix` back into weight and bias."""
        b = self.bias
        n = mat.shape[1] - (1 if b is not None else 0)
        self.weight.detach().copy_(mat[:, :n].reshape(self.weight.shape))
        if b is not None:
            b.detach().copy_(mat[:, n])
