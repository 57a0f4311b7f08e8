"""Glorot-uniform initialisation of weights AND biases, as TF's ``glorot_uniform`` does it."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["glorot_uniform_"]


@torch.no_grad()
def glorot_uniform_(layer: nn.Linear, generator: torch.Generator | None = None) -> nn.Linear:
    """Initialise ``layer`` in place with U(-r, r), r = sqrt(6 / (fan_in + fan_out)).

    For the bias (a 1-D tensor of size n) TF takes fan_in = fan_out = n, so r = sqrt(3 / n); the
    official LocoProp code initialises biases this way (Glorot & Bengio, AISTATS 2010).
    """
    fan_out, fan_in = layer.weight.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    layer.weight.uniform_(-bound, bound, generator=generator)
    if layer.bias is not None:
        b = math.sqrt(3.0 / layer.bias.numel())
        layer.bias.uniform_(-b, b, generator=generator)
    return layer
