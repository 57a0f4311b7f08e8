"""LocoProp's documented starting recipes (``docs/locoprop-models.md``) as registry methods for any model; what
LocoProp cannot train goes to ``other_optimizer``, AdamW at ``other_lr`` (``None``: at ``lr``, both Adam rates)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.locoprop import LocoProp

from ..core._method import Method
from ..core._registry import register_method
from ._locoprop import _closure

__all__: list[str] = []


def _recipe(model: nn.Module, lr: float, *, other_lr: float | None, **kw: Any) -> torch.optim.Optimizer:
    rate = lr if other_lr is None else other_lr
    return LocoProp(model, lr=lr, other_optimizer=lambda ps: torch.optim.AdamW(ps, lr=rate), **kw)


for _m in [
    Method(
        "locoprop-cnn",
        "LocoProp-M, the CNN recipe: preconditioned solver, T=1, γ=100, λ=10, inverse refreshed every 25 steps; "
        "AdamW (other_lr) for the rest",
        _recipe,
        1.0,
        {
            "variant": "m",
            "solver": "precond",
            "steps": 1,
            "gamma": 100.0,
            "damping": 10.0,
            "refresh_every": 25,
            "other_lr": 3e-3,
        },
        closure=_closure,
    ),
    Method(
        "locoprop-transformer",
        "LocoProp-M, the transformer recipe: T=1 inner Adam step, γ=1e4; AdamW at the same rate for the rest",
        _recipe,
        3e-3,
        {"variant": "m", "solver": "iterative", "inner": "adam", "steps": 1, "gamma": 1e4, "other_lr": None},
        closure=_closure,
    ),
]:
    register_method(_m)
