"""Transfer functions and their matching losses (LocoProp-M), in a registry users can extend.

For a strictly increasing transfer function ``f`` with convex integral ``F`` (``F' = f``) the
matching loss of a pre-activation ``z`` against a target pre-activation ``a`` is the Bregman
divergence (Amid et al. 2022, eq. 4; Helmbold et al. 1999)

    D_F(z, a) = F(z) - F(a) - <f(a), z - a>  >= 0,    ∇_z D_F = f(z) - f(a) = f(z) - y.

LocoProp only needs the gradient ``f(z) - y``, so ``F`` is optional: it is used to report the
loss value and by the property tests. ``curvature`` is an upper bound on ``f'`` (the local
Hessian is ``Σ f'(z) x xᵀ``); the ``"precond"`` solver uses it to take guaranteed-descent steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Activation", "get_activation", "register_activation", "activation_names",
           "activation_for_module", "matching_loss"]

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    """A transfer function known to LocoProp.

    Args:
        name: registry key (``LocoProp(layers=[(layer, name)])``).
        fn: ``f``, applied to a pre-activation tensor.
        integral: ``F`` with ``F' = f`` (elementwise, or per row for softmax); optional.
        curvature: an upper bound of ``f'`` (1 for tanh and relu, 1/4 for sigmoid).
        modules: ``nn.Module`` types that apply ``f``; found automatically after a layer.
    """

    name: str
    fn: Fn
    integral: Fn | None = None
    curvature: float = 1.0
    modules: tuple[type[nn.Module], ...] = ()


def _log_cosh(z: torch.Tensor) -> torch.Tensor:
    return z + F.softplus(-2.0 * z) - math.log(2.0)


def _half_relu_sq(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.relu(z).square()


_REGISTRY: dict[str, Activation] = {}


def register_activation(activation: Activation, *, overwrite: bool = False) -> Activation:
    """Add ``activation`` to the registry (``overwrite=True`` replaces an entry of the same name)."""
    if not isinstance(activation, Activation):
        raise TypeError(f"register_activation expects an Activation, found {type(activation).__name__}. "
                        "Build one with Activation(name, fn, integral=..., modules=(...,)).")
    if activation.name in _REGISTRY and not overwrite:
        raise ValueError(f"Activation {activation.name!r} is already registered. "
                         "Pass overwrite=True to replace it, or choose another name.")
    if not activation.curvature > 0:
        raise ValueError(f"Invalid curvature={activation.curvature!r} for activation {activation.name!r}: "
                         "must be a positive upper bound of f'.")
    _REGISTRY[activation.name] = activation
    return activation


def activation_names() -> list[str]:
    """The registered activation names."""
    return sorted(_REGISTRY)


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (an :class:`Activation` is returned as is)."""
    if isinstance(name, Activation):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}. Known: {', '.join(activation_names())}. "
                         "Register your own with layerwise.locoprop.register_activation.") from None


def activation_for_module(module: nn.Module) -> Activation | None:
    """The registered activation that ``module`` applies, or ``None``."""
    if isinstance(module, nn.Softmax) and module.dim not in (None, -1, 1):
        return None
    for act in _REGISTRY.values():
        if act.modules and isinstance(module, act.modules):
            return act
    return None


def matching_loss(activation: str | Activation, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Summed matching loss ``D_F(z, a)`` of pre-activations ``z`` against target pre-activations ``a``."""
    act = get_activation(activation)
    if act.integral is None:
        raise ValueError(f"Activation {act.name!r} has no integral F, so its matching loss has no value "
                         "(LocoProp still trains with its gradient f(z) - y). Register it with integral=...")
    return act.integral(z).sum() - act.integral(a).sum() - (act.fn(a) * (z - a)).sum()


for _act in [
    Activation("identity", lambda z: z, lambda z: 0.5 * z.square(), 1.0, (nn.Identity,)),
    Activation("sigmoid", torch.sigmoid, F.softplus, 0.25, (nn.Sigmoid,)),
    Activation("tanh", torch.tanh, _log_cosh, 1.0, (nn.Tanh,)),
    Activation("relu", torch.relu, _half_relu_sq, 1.0, (nn.ReLU,)),
    Activation("softmax", lambda z: torch.softmax(z, dim=-1), lambda z: torch.logsumexp(z, dim=-1), 0.5,
               (nn.Softmax,)),
]:
    register_activation(_act)
