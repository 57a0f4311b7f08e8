"""Update rules for LocoProp's inner (local) steps, each one small function over a state dict.

The rules act on ``(param, grad, state, lr)`` and keep their slots in ``state`` (the optimizer's
per-parameter state, so they are saved by ``state_dict`` and kept across mini-batches, as the
official code does).

``tf-rmsprop`` is TensorFlow 1's ``RMSPropOptimizer``, used by the official LocoProp notebook. It is
not ``torch.optim.RMSprop``: the mean square starts at ones, ``eps`` is inside the root and the
learning rate enters the momentum buffer::

    ms  = ρ·ms + (1-ρ)·g²;   mom = μ·mom + lr·g / sqrt(ms + eps);   w -= mom
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["INNER_RULES", "inner_defaults"]

Rule = Callable[[torch.Tensor, torch.Tensor, dict[str, Any], float, dict[str, Any]], None]


def _slot(state: dict[str, Any], key: str, like: torch.Tensor, fill: float) -> torch.Tensor:
    if key not in state:
        state[key] = torch.full_like(like, fill, memory_format=torch.preserve_format)
    value: torch.Tensor = state[key]
    return value


def _sgd(p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], lr: float, o: dict[str, Any]) -> None:
    mu = o["momentum"]
    if mu == 0:
        p.add_(g, alpha=-lr)
        return
    if "momentum_buffer" not in state:  # torch.optim.SGD semantics: the buffer starts at g
        state["momentum_buffer"] = g.clone()
    else:
        state["momentum_buffer"].mul_(mu).add_(g)
    p.add_(state["momentum_buffer"], alpha=-lr)


def _tf_rmsprop(p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], lr: float, o: dict[str, Any]) -> None:
    ms = _slot(state, "ms", p, 1.0)
    mom = _slot(state, "mom", p, 0.0)
    ms.mul_(o["decay"]).addcmul_(g, g, value=1.0 - o["decay"])
    mom.mul_(o["momentum"]).addcdiv_(g, ms.add(o["eps"]).sqrt_(), value=lr)
    p.sub_(mom)


def _rmsprop(p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], lr: float, o: dict[str, Any]) -> None:
    ms = _slot(state, "square_avg", p, 0.0)
    ms.mul_(o["decay"]).addcmul_(g, g, value=1.0 - o["decay"])
    avg = ms.sqrt().add_(o["eps"])
    if o["momentum"] > 0:
        buf = _slot(state, "momentum_buffer", p, 0.0)
        buf.mul_(o["momentum"]).addcdiv_(g, avg)
        p.add_(buf, alpha=-lr)
    else:
        p.addcdiv_(g, avg, value=-lr)


def _adam(p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], lr: float, o: dict[str, Any]) -> None:
    b1, b2 = o["betas"]
    m = _slot(state, "exp_avg", p, 0.0)
    v = _slot(state, "exp_avg_sq", p, 0.0)
    state["adam_step"] = state.get("adam_step", 0) + 1
    t = state["adam_step"]
    m.mul_(b1).add_(g, alpha=1.0 - b1)
    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    denom = (v / (1.0 - b2**t)).sqrt_().add_(o["eps"])
    p.addcdiv_(m, denom, value=-lr / (1.0 - b1**t))


INNER_RULES: dict[str, Rule] = {"sgd": _sgd, "tf-rmsprop": _tf_rmsprop, "rmsprop": _rmsprop, "adam": _adam}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0},
    "tf-rmsprop": {"momentum": 0.999, "decay": 0.9, "eps": 1e-5},
    "rmsprop": {"momentum": 0.0, "decay": 0.99, "eps": 1e-8},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
}


def inner_defaults(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The options of inner rule ``name``: its defaults updated by ``options`` (unknown keys rejected)."""
    if name not in INNER_RULES:
        raise ValueError(f"Invalid inner={name!r}. Expected one of {sorted(INNER_RULES)}.")
    merged = dict(_DEFAULTS[name])
    for key, value in (options or {}).items():
        if key not in merged:
            raise ValueError(
                f"Invalid inner_options key {key!r} for inner={name!r}. Expected some of {sorted(merged)}."
            )
        merged[key] = value
    return merged
