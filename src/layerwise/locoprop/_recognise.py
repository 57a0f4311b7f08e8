"""Which transfer function follows a layer, read WITH its arguments.

An activation module (``nn.Softmax(dim=1)``, ``nn.LeakyReLU(0.2)``) or a call in a ``torch.fx``
graph (``F.softmax(h, dim=1)``, ``h.relu_()``) becomes the :class:`Activation` it computes,
arguments included: softmax over the dimension it normalises, leaky ReLU with its slope. An
argument the matching loss cannot honour (``nn.Softmax(dim=None)``, ``dtype=``, a slope outside
[0, 1]) is an error naming the layer; nothing is silently approximated. A function LocoProp has no
matching loss for (GELU, SiLU: not monotone) is not an activation here: the layer before it gets the
identity matching loss, squared error on its pre-activation (LocoProp-S for that layer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._activations import Activation, activation_names, get_activation, leaky_relu, softmax_over

__all__ = ["activation_for_call", "activation_for_module"]

_PLAIN_MODULES: dict[type[nn.Module], str] = {
    nn.Identity: "identity",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
}  # ReLU's only argument, inplace, does not change f
_PLAIN_CALLS: dict[object, str] = {
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu: "relu",
    F.relu_: "relu",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
}
_PLAIN_METHODS = {
    "relu": "relu",
    "relu_": "relu",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "tanh": "tanh",
    "tanh_": "tanh",
}
_SOFTMAX_DTYPE_POSITION: dict[object, int] = {F.softmax: 3, torch.softmax: 2, "softmax": 2}
_LEAKY_CALLS = (F.leaky_relu, F.leaky_relu_, "leaky_relu", "leaky_relu_")


def _unhonoured(where: str, what: str, fix: str) -> ValueError:
    return ValueError(
        f"LocoProp layer {where!r} is followed by {what}, which its matching loss cannot honour. "
        f"{fix} Or give the layer to other_optimizer=... with exclude=[{where!r}], or declare it "
        f"with layers=[(module, activation)]."
    )


def activation_for_module(module: nn.Module, where: str) -> Activation | None:
    """The activation ``module`` applies (``where``: the name of the layer before it), or ``None``."""
    if isinstance(module, nn.Softmax):
        if module.dim is None:
            raise _unhonoured(
                where,
                "nn.Softmax(dim=None) (its dimension is guessed from the input's rank)",
                "Construct it with an explicit dim, e.g. nn.Softmax(dim=1).",
            )
        return softmax_over(module.dim)
    if isinstance(module, nn.LeakyReLU):
        return _leaky(module.negative_slope, where)
    if type(module) in _PLAIN_MODULES:
        return get_activation(_PLAIN_MODULES[type(module)])
    for name in activation_names():
        act = get_activation(name)
        if act.modules and isinstance(module, act.modules):
            return act
    return None


def activation_for_call(
    target: object, args: Sequence[Any], kwargs: Mapping[str, Any], where: str
) -> Activation | None:
    """The activation of a ``call_function`` (``target`` a function) or ``call_method`` (``target`` a
    method name) whose first argument is the layer's output, or ``None``."""
    key = target if isinstance(target, str) else _hashable(target)
    if isinstance(target, str) and target in _PLAIN_METHODS:
        return get_activation(_PLAIN_METHODS[target])
    if not isinstance(target, str) and key in _PLAIN_CALLS:
        return get_activation(_PLAIN_CALLS[key])
    if key in _SOFTMAX_DTYPE_POSITION:
        return _softmax_call(key, args, kwargs, where)
    if key in _LEAKY_CALLS:
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        return _leaky(slope, where)
    return None


def _hashable(target: object) -> object:
    try:
        hash(target)
    except TypeError:
        return None
    return target


def _softmax_call(key: object, args: Sequence[Any], kwargs: Mapping[str, Any], where: str) -> Activation:
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    position = _SOFTMAX_DTYPE_POSITION[key]
    dtype = args[position] if len(args) > position else kwargs.get("dtype")
    if dim is None:
        raise _unhonoured(
            where,
            "a softmax without dim (its dimension is guessed from the input's rank)",
            "Pass dim explicitly, e.g. F.softmax(h, dim=1).",
        )
    if not isinstance(dim, int):
        raise _unhonoured(where, f"a softmax over dim={dim!r} (not a constant int)", "Pass a constant int dim.")
    if dtype is not None:
        raise _unhonoured(
            where,
            f"a softmax computed in dtype={dtype}",
            "Drop dtype= (the matching loss is computed in the layer's dtype).",
        )
    return softmax_over(dim)


def _leaky(slope: object, where: str) -> Activation:
    if not isinstance(slope, (int, float)) or not 0.0 <= float(slope) <= 1.0:
        raise _unhonoured(
            where,
            f"a leaky ReLU with negative_slope={slope!r} (not increasing, or not a constant)",
            "Use a constant slope in [0, 1].",
        )
    return leaky_relu(float(slope))
