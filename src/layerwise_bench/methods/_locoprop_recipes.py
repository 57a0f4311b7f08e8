"""LocoProp's documented starting recipes (``docs/locoprop-models.md``) as registry methods for any model; what
LocoProp cannot train goes to ``other_optimizer``, AdamW at ``other_lr`` (``None``: at ``lr``, both Adam rates)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from layerwise.locoprop import LocoProp

from ..core._method import Method, standard_closure
from ..core._registry import get_method, register_method
from ._locoprop import _closure

__all__: list[str] = []


def _recipe(
    model: nn.Module, lr: float, *, other_lr: float | None, head_to_other: bool = False, **kw: Any
) -> torch.optim.Optimizer:
    rate = lr if other_lr is None else other_lr
    # head_to_other: a module named ``head`` goes to AdamW, as Muon's split does (the method ``muon``)
    heads = [n for n, _ in model.named_modules() if head_to_other and n.rsplit(".", 1)[-1] == "head"]
    with warnings.catch_warnings():
        if heads:  # on a small model the head is a large share: the warning would report this choice
            warnings.filterwarnings("ignore", message="LocoProp trains", category=UserWarning)
        return LocoProp(model, lr=lr, other_optimizer=lambda ps: torch.optim.AdamW(ps, lr=rate), exclude=heads, **kw)


_CNN = {
    "variant": "m",
    "solver": "precond",
    "steps": 1,
    "gamma": 100.0,
    "damping": 10.0,
    "refresh_every": 25,
    "other_lr": 3e-3,
}

for _m in [
    Method(
        "locoprop-cnn",
        "LocoProp-M, the CNN recipe: preconditioned solver, T=1, γ=100, λ=10, inverse refreshed every 25 steps; "
        "AdamW (other_lr) for the rest",
        _recipe,
        1.0,
        dict(_CNN),
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
    Method(
        "locoprop-eigen",
        "LocoProp-M, T=1 inner Adam step in the eigenbasis of each layer's input covariance (the local Hessian's), "
        "basis refreshed every 10 steps from an average (β 0.6), γ=1e4; AdamW at the same rate for the rest",
        _recipe,
        3e-3,
        {
            "variant": "m",
            "solver": "iterative",
            "inner": "adam",
            "steps": 1,
            "gamma": 1e4,
            "inner_basis": "eigen",
            "refresh_every": 10,
            "basis_beta": 0.6,
            "other_lr": None,
        },
        closure=_closure,
    ),
    Method(
        "locoprop-cnn-momentum",
        "The CNN recipe with an outer Nesterov momentum 0.9 on the preconditioned step (the protocol chose lr 10 "
        "on resnet-mnist)",
        _recipe,
        1.0,
        {**_CNN, "momentum": 0.9},
        closure=_closure,
    ),
    Method(
        "locoprop-cnn-sampled",
        "The momentum CNN recipe with each refresh's input covariance from the batch's first 32 examples, scaled "
        "(covariance_examples=32: a quarter of the covariance's cost at resnet-mnist's batch of 128)",
        _recipe,
        1.0,
        {**_CNN, "momentum": 0.9, "covariance_examples": 32},
        closure=_closure,
    ),
    Method(
        "locoprop-newton-muon",
        "LocoProp-S's preconditioned step orthogonalised as Muon's (Newton-Muon): momentum 0.95, 5 Newton-Schulz "
        "steps in float32, λ=1e4, inverse refreshed every 25 steps; AdamW at 1e-3 for the head and the rest, as `muon`",
        _recipe,
        0.02,
        {
            "variant": "s",
            "solver": "precond",
            "steps": 1,
            "damping": 1e4,
            "refresh_every": 25,
            "momentum": 0.95,
            "orthogonalize": True,
            "other_lr": 1e-3,
            "head_to_other": True,
        },
        closure=_closure,
    ),
]:
    register_method(_m)

# The same configurations stepped as any optimizer (zero_grad, loss.backward(), step()): what the standard
# contract costs against the no-backward closure (the weight gradients are formed, and LocoProp does not read them).
for _name in ("locoprop-cnn", "locoprop-transformer", "locoprop-m-bf16-t5-c4"):
    _m = get_method(_name)
    register_method(
        replace(
            _m,
            name=f"{_name}-backward",
            summary=f"{_m.summary}; stepped as any optimizer: zero_grad(), loss.backward(), step()",
            closure=standard_closure,
        )
    )
