"""The deep autoencoder benchmark of Hinton & Salakhutdinov (2006) as set up by LocoProp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ._init import glorot_uniform_

__all__ = ["AUTOENCODER_WIDTHS", "deep_autoencoder", "sigmoid_cross_entropy"]

AUTOENCODER_WIDTHS: tuple[int, ...] = (1000, 500, 250, 30)

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def deep_autoencoder(
    in_features: int = 784,
    widths: Sequence[int] = AUTOENCODER_WIDTHS,
    *,
    activation: Literal["tanh", "relu", "sigmoid"] = "tanh",
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Build ``in-1000-500-250-30-250-500-1000-in`` with Glorot-uniform weights and biases.

    Hidden layers use ``activation``; the code layer (``widths[-1]`` units) is LINEAR; the last
    layer returns logits (apply the sigmoid in the loss: :func:`sigmoid_cross_entropy`).

    Example:
        >>> model = deep_autoencoder()
        >>> model(torch.zeros(2, 784)).shape
        torch.Size([2, 784])
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Invalid activation={activation!r}. Expected one of {sorted(_ACTIVATIONS)}.")
    if in_features < 1 or not widths or any(w < 1 for w in widths):
        raise ValueError(f"Invalid sizes in_features={in_features}, widths={tuple(widths)}: all must be >= 1.")
    dims = [in_features, *widths, *reversed(widths[:-1]), in_features]
    code_layer = len(widths) - 1
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(glorot_uniform_(nn.Linear(n_in, n_out), generator))
        if i != code_layer and i != len(dims) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def sigmoid_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy with logits, SUMMED over features and AVERAGED over the batch.

    ``L = (1/B) sum_b sum_j [softplus(s_bj) - t_bj s_bj]``, in nats per example.
    """
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape, found {tuple(logits.shape)} and {tuple(target.shape)}."
        )
    per_element = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_element.sum() / logits.shape[0]
