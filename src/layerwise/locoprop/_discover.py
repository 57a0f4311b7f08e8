"""Find LocoProp's (layer, activation) pairs in a model: declared, from ``nn.Sequential`` order, or
by ``torch.fx`` tracing; and the parameters left over for another optimizer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._activations import Activation, activation_for_module, get_activation
from ._layers import SUPPORTED_LAYERS, LocalLayer, check_layer

__all__ = ["LayerSpec", "find_layers", "leftover_parameters"]

LayerSpec = tuple[nn.Module, "str | Activation"]

_FUNCTIONS: dict[object, str] = {torch.tanh: "tanh", torch.sigmoid: "sigmoid", torch.relu: "relu", F.relu: "relu",
                                 F.tanh: "tanh", F.sigmoid: "sigmoid", torch.softmax: "softmax", F.softmax: "softmax"}
_METHODS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "softmax": "softmax"}


def _names(model: nn.Module) -> dict[nn.Module, str]:
    return {m: n for n, m in model.named_modules()}


def _leaves(seq: nn.Sequential) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in seq:
        out.extend(_leaves(child) if isinstance(child, nn.Sequential) else [child])
    return out


def _from_sequential(model: nn.Sequential) -> list[tuple[nn.Module, Activation]]:
    leaves = _leaves(model)
    pairs: list[tuple[nn.Module, Activation]] = []
    for i, m in enumerate(leaves):
        if isinstance(m, SUPPORTED_LAYERS):
            act = activation_for_module(leaves[i + 1]) if i + 1 < len(leaves) else None
            pairs.append((m, act or get_activation("identity")))
    return pairs


def _from_trace(model: nn.Module) -> list[tuple[nn.Module, Activation]]:
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # tracing fails on data-dependent control flow
        raise ValueError(f"LocoProp could not trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
                         f"{exc}). Declare the layers instead: LocoProp(model, layers=[(model.fc1, 'tanh'), ...]).") from exc
    pairs: list[tuple[nn.Module, Activation]] = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        m = model.get_submodule(node.target)
        if not isinstance(m, SUPPORTED_LAYERS):
            continue
        act: Activation | None = None
        users = list(node.users)
        if len(users) == 1:
            u = users[0]
            if u.op == "call_module":
                act = activation_for_module(model.get_submodule(u.target))
            elif u.op == "call_function" and u.target in _FUNCTIONS:
                act = get_activation(_FUNCTIONS[u.target])
            elif u.op == "call_method" and u.target in _METHODS:
                act = get_activation(_METHODS[u.target])
        pairs.append((m, act or get_activation("identity")))
    return pairs


def find_layers(model: nn.Module, layers: Sequence[LayerSpec] | None) -> list[LocalLayer]:
    """The LocoProp layers of ``model``: ``layers`` if given, else ``nn.Sequential`` order, else fx tracing.

    A layer followed by no known activation is given ``identity`` (its local loss is squared error).
    """
    names = _names(model)
    if layers is not None:
        pairs = []
        for i, spec in enumerate(layers):
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], nn.Module)):
                raise TypeError(f"Invalid layers[{i}]={spec!r}: expected a (module, activation) pair such as "
                                "(model.fc1, 'tanh').")
            pairs.append((spec[0], get_activation(spec[1])))
    elif isinstance(model, nn.Sequential):
        pairs = _from_sequential(model)
    else:
        pairs = _from_trace(model)
    found: list[LocalLayer] = []
    seen: set[int] = set()
    for module, act in pairs:
        if module not in names:
            raise ValueError(f"A declared LocoProp layer ({type(module).__name__}) is not a submodule of the model. "
                             "Declare modules of the model you pass.")
        name = names[module] or "<model>"
        check_layer(module, name)
        if id(module) in seen:
            raise ValueError(f"LocoProp layer {name!r} is declared twice. Declare each layer once.")
        seen.add(id(module))
        trainable = [p.requires_grad for p in module.parameters(recurse=False)]
        if any(trainable) and not all(trainable):
            raise ValueError(f"LocoProp layer {name!r} has a frozen and a trainable parameter. Freeze both weight "
                             "and bias (requires_grad_(False)) or neither.")
        if any(trainable):
            found.append(LocalLayer(name, module, act))
    if not found:
        raise ValueError(f"LocoProp found no trainable nn.Linear or nn.Conv2d layer in {type(model).__name__}. "
                         "Declare them with layers=[(module, activation), ...].")
    return found


def leftover_parameters(model: nn.Module, layers: Iterable[LocalLayer]) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters of ``model`` that no LocoProp layer owns."""
    owned = {id(p) for layer in layers for p in layer.module.parameters(recurse=False)}
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in owned]
