"""LocoProp's entries in the autoencoder benchmark: every layer takes the activation that follows it, the output layer
the sigmoid matching loss (as in the official notebook)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerwise.locoprop import LocoProp

from ..core._method import LossFn, Method
from ..core._registry import register_method

__all__ = ["OFFICIAL_SANITY_CURVE"]

#: Training loss by epoch of the official notebook's LocoProp-M run (tanh, T=10, defaults, 100-epoch
#: schedule), from ``shared/notes/locoprop.md``; a faithful port must track it.
OFFICIAL_SANITY_CURVE = {1: 547.2, 2: 122.7, 3: 80.7, 4: 69.6, 5: 65.2, 6: 62.9, 8: 60.2, 10: 58.7, 12: 57.8, 14: 57.0}


def _autoencoder_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    mods = list(model.children()) if isinstance(model, nn.Sequential) else []
    if not mods or not isinstance(mods[-1], nn.Linear):
        raise TypeError(
            "The LocoProp benchmark methods expect the deep autoencoder (an nn.Sequential ending in a "
            "Linear logits layer). Use layerwise.LocoProp directly for other models."
        )
    pairs: list[tuple[nn.Module, str]] = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            pairs.append((m, {nn.Tanh: "tanh", nn.ReLU: "relu"}.get(type(nxt), "identity")))
    pairs[-1] = (pairs[-1][0], "sigmoid")
    return pairs


def _build(model: nn.Module, lr: float, **kw: Any) -> torch.optim.Optimizer:
    if "inner_dtype" in kw:  # a name in the (JSON) hyper-parameters, a torch.dtype for LocoProp
        kw["inner_dtype"] = getattr(torch, kw["inner_dtype"])
    return LocoProp(model, lr=lr, layers=_autoencoder_layers(model), **kw)


def _closure(
    opt: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, target: torch.Tensor
) -> Callable[[], torch.Tensor]:
    return lambda: loss_fn(model(x), target)


_OFFICIAL = {
    "variant": "m",
    "gamma": 10.0,
    "steps": 10,
    "inner": "tf-rmsprop",
    "inner_options": {"momentum": 0.999, "decay": 0.9, "eps": 1e-5},
}


def _entry(name: str, description: str, hparams: dict[str, Any], lr: float = 1e-5, **kw: Any) -> Method:
    return Method(name, description, _build, lr, hparams, closure=_closure, **kw)


def _bf16(name: str, description: str, **extra: Any) -> Method:
    """The official settings with bfloat16 inner products (float32 where the CPU only emulates bfloat16)."""
    hparams = {**_OFFICIAL, "inner_dtype": "bfloat16", **extra}
    return _entry(name, description, hparams, hardware_fallback={"inner_dtype": "float32"})


for _m in [
    _entry("locoprop-m", "LocoProp-M, official settings: T=10 TF1-RMSProp inner steps, γ=10", dict(_OFFICIAL)),
    _bf16(
        "locoprop-m-bf16",
        "LocoProp-M, official settings, inner products in bfloat16 (delta form, float32 residuals and weights)",
    ),
    _bf16(
        "locoprop-m-bf16-t5",
        "LocoProp-M, inner products in bfloat16, T=5 inner steps (half the inner work of T=10)",
        steps=5,
    ),
    *(
        _bf16(
            f"locoprop-m-bf16-t5-c{n}",
            f"LocoProp-M, bfloat16 inner products, T=5 inner steps each on {part} of the batch (inner_chunks={n})",
            steps=5,
            inner_chunks=n,
        )
        for n, part in ((2, "half"), (4, "a quarter"))
    ),
    _entry(
        "locoprop-s",
        "LocoProp-S (squared loss on pre-activations), T=10 TF1-RMSProp inner steps, γ=10",
        {**_OFFICIAL, "variant": "s"},
    ),
    _entry(
        "locoprop-s-exact",
        "LocoProp-S solved exactly: −γ∇L(λI + Σŷŷᵀ)⁻¹",
        {"variant": "s", "solver": "exact", "gamma": 1000.0, "damping": 1000.0},
        lr=1.0,
    ),
    _entry(
        "locoprop-m-precond",
        "LocoProp-M, 3 majorise-minimise steps preconditioned by (λI + cΣŷŷᵀ)⁻¹",
        {"variant": "m", "solver": "precond", "steps": 3, "gamma": 1000.0, "damping": 1000.0},
        lr=1.0,
    ),
]:
    register_method(_m)
