"""The model of ``layerwise bench depth``: a plain MLP (no residual, no normalisation) and its initialisations."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "INITS", "blocks_of", "build_mlp", "linear_layers"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
#: ``default``: PyTorch's ``nn.Linear`` init (Kaiming-uniform, a=√5: U(±1/√fan_in)); ``glorot``:
#: ``xavier_uniform_`` weights, zero biases; ``orthogonal``: ``orthogonal_`` with
#: ``calculate_gain(activation)`` on hidden layers (gain 1 on the linear output), zero biases;
#: ``critical``: orthogonal weights scaled by 1/f'(0) (tanh 1, sigmoid 4) and, after a sigmoid layer,
#: the bias −W·½ that centres its input, so every layer is an isometry at 0 (dynamical isometry:
#: Saxe et al. 2014, Pennington et al. 2017; sigmoid(a) = ½ + ½ tanh(a/2)).
INITS = ("default", "glorot", "orthogonal", "critical")
_SLOPE = {"tanh": 1.0, "sigmoid": 0.25}  # f'(0)
_CENTRE = {"tanh": 0.0, "sigmoid": 0.5}  # f(0)


def build_mlp(
    in_features: int,
    num_classes: int,
    depth: int,
    width: int,
    activation: str,
    init: Literal["default", "glorot", "orthogonal", "critical"] = "default",
) -> nn.Sequential:
    """``depth`` hidden layers ``activation(Linear)`` of ``width`` units, then a linear output, as ONE flat
    ``nn.Sequential`` ``[Linear, act, Linear, act, …, Linear]`` (hidden layer i, 1-based, is modules
    ``2i−2`` and ``2i−1``): the layout LocoProp, Taps and the decoupled blocks all read directly."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Invalid activation={activation!r}. Expected one of {list(ACTIVATIONS)}.")
    if init not in INITS:
        raise ValueError(f"Invalid init={init!r}. Expected one of {list(INITS)}.")
    if depth < 1 or width < 1:
        raise ValueError(f"Invalid depth={depth} or width={width}: expected whole numbers >= 1.")
    sizes = [in_features] + [width] * depth
    modules: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        modules += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    modules.append(nn.Linear(width, num_classes))
    model = nn.Sequential(*modules)
    if init != "default":
        gain = nn.init.calculate_gain(activation)  # type: ignore[arg-type]
        with torch.no_grad():
            for i, lin in enumerate(linear_layers(model)):
                g = gain if i < depth else 1.0
                if init == "glorot":
                    nn.init.xavier_uniform_(lin.weight)
                elif init == "orthogonal":
                    nn.init.orthogonal_(lin.weight, gain=g)
                else:
                    nn.init.orthogonal_(lin.weight, gain=1.0 / _SLOPE[activation] if i < depth else 1.0)
                nn.init.zeros_(lin.bias)
                if init == "critical" and i > 0:  # the previous layer's outputs are centred at f(0)
                    lin.bias.copy_(-_CENTRE[activation] * lin.weight.sum(1))
    return model


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of :func:`build_mlp`'s model, input to output (depth + 1 of them)."""
    return [m for m in model if isinstance(m, nn.Linear)]


def blocks_of(model: nn.Sequential) -> list[nn.Module]:
    """The decoupled blocks ``[Linear+act] × depth + [Linear]``: views sharing the model's modules."""
    n = len(model)
    return [model[i : i + 2] if i + 1 < n else model[i] for i in range(0, n, 2)]
