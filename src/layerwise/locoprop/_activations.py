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

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Activation",
    "get_activation",
    "leaky_relu",
    "register_activation",
    "activation_names",
    "matching_loss",
    "softmax_over",
]

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
        raise TypeError(
            f"register_activation expects an Activation, found {type(activation).__name__}. "
            "Build one with Activation(name, fn, integral=..., modules=(...,))."
        )
    if activation.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"Activation {activation.name!r} is already registered. "
            "Pass overwrite=True to replace it, or choose another name."
        )
    if not activation.curvature > 0:
        raise ValueError(
            f"Invalid curvature={activation.curvature!r} for activation {activation.name!r}: "
            "must be a positive upper bound of f'."
        )
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
        raise ValueError(
            f"Unknown activation {name!r}. Known: {', '.join(activation_names())}. "
            "Register your own with layerwise.locoprop.register_activation."
        ) from None


def matching_loss(activation: str | Activation, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Summed matching loss ``D_F(z, a)`` of pre-activations ``z`` against target pre-activations ``a``."""
    act = get_activation(activation)
    if act.integral is None:
        raise ValueError(
            f"Activation {act.name!r} has no integral F, so its matching loss has no value "
            "(LocoProp still trains with its gradient f(z) - y). Register it with integral=..."
        )
    return act.integral(z).sum() - act.integral(a).sum() - (act.fn(a) * (z - a)).sum()


for _act in [
    Activation("identity", lambda z: z, lambda z: 0.5 * z.square(), 1.0, (nn.Identity,)),
    Activation("sigmoid", torch.sigmoid, F.softplus, 0.25, (nn.Sigmoid,)),
    Activation("tanh", torch.tanh, _log_cosh, 1.0, (nn.Tanh,)),
    Activation("relu", torch.relu, _half_relu_sq, 1.0, (nn.ReLU,)),
    Activation("softmax", lambda z: torch.softmax(z, dim=-1), lambda z: torch.logsumexp(z, dim=-1), 0.5, (nn.Softmax,)),
]:
    register_activation(_act)


@functools.cache
def softmax_over(dim: int) -> Activation:
    """Softmax over dimension ``dim``; its matching loss is ``logsumexp`` over the same dimension.

    ``f'`` (the Jacobian ``diag(p) − ppᵀ``) has eigenvalues at most 1/2, the curvature bound.
    ``softmax_over(-1)`` is the registered ``"softmax"``.
    """
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"Invalid dim={dim!r} for softmax_over: expected an int.")
    if dim == -1:
        return get_activation("softmax")
    return Activation(
        f"softmax(dim={dim})", lambda z: torch.softmax(z, dim=dim), lambda z: torch.logsumexp(z, dim=dim), 0.5
    )


@functools.cache
def leaky_relu(negative_slope: float) -> Activation:
    """Leaky ReLU ``f(z) = max(z, s·z)`` for a slope ``0 <= s <= 1``; ``F(z) = ½ f(z) z``, curvature 1."""
    s = float(negative_slope)
    if not 0.0 <= s <= 1.0:
        raise ValueError(
            f"Invalid negative_slope={negative_slope!r} for LocoProp's leaky_relu: its matching loss "
            "needs an increasing f, so 0 <= negative_slope <= 1. Give the layer before it to "
            "other_optimizer=... (exclude=[...])."
        )
    if s == 0.0:
        return get_activation("relu")
    return Activation(f"leaky_relu({s:g})", lambda z: F.leaky_relu(z, s), lambda z: 0.5 * F.leaky_relu(z, s) * z, 1.0)
