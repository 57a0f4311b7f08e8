"""LocoProp: layer-wise local losses solved with a few local steps (Amid, Anil, Warmuth, AISTATS 2022).

``LocoProp`` is a ``torch.optim.Optimizer``; transfer functions and their matching losses live in
a registry (``register_activation``) that users extend with their own activation. Which layers and
activations of a real model LocoProp trains, and starting recipes per architecture family:
``docs/locoprop-models.md``.
"""

from ._activations import (
    Activation,
    activation_names,
    get_activation,
    leaky_relu,
    matching_loss,
    register_activation,
    softmax_over,
)
from ._inner import INNER_RULES
from ._layers import LocalLayer
from ._optimizer import LocoProp
from ._stats import LayerStats

__all__ = [
    "INNER_RULES",
    "Activation",
    "LayerStats",
    "LocalLayer",
    "LocoProp",
    "activation_names",
    "get_activation",
    "leaky_relu",
    "matching_loss",
    "register_activation",
    "softmax_over",
]
