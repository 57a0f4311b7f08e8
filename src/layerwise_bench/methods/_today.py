"""The optimizers people reach for today, as benchmark methods: ``muon`` (:class:`MuonAdam`), ``kron`` (PSGD-Kron),
``soap`` and ``schedule-free-adamw`` (from ``pytorch-optimizer``); weight decay 0, as for the paper's baselines."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core._method import Method
from ..core._registry import register_method
from ._baselines import pytorch_optimizer
from ._muon import MuonAdam

__all__: list[str] = []


def _muon(model: nn.Module, lr: float, **kw: Any) -> torch.optim.Optimizer:
    return MuonAdam(model, lr, **kw)


def _kron(model: nn.Module, lr: float, **kw: Any) -> torch.optim.Optimizer:
    if not torch.backends.opt_einsum.is_available():
        raise ImportError(
            "method 'kron' needs opt-einsum (without it PSGD-Kron's einsums ask for terabytes): "
            "pip install 'layerwise[second-order]'"
        )
    return pytorch_optimizer("Kron", "kron")(model.parameters(), lr=lr, **kw)


for _m in [
    Method(
        "muon",
        "Muon (torch.optim.Muon's update, Nesterov 0.95, 5 Newton-Schulz steps in bfloat16) on weight matrices, "
        "Adam on biases",
        _muon,
        0.0632,
        {"adam_lr": 1e-3, "momentum": 0.95, "ns_dtype": "bfloat16"},
        hardware_fallback={"ns_dtype": "float32"},
    ),
    Method(
        "kron",
        "PSGD-Kron (pytorch-optimizer), momentum 0.9, default preconditioner-update schedule",
        _kron,
        3.16e-3,
        {"momentum": 0.9, "weight_decay": 0.0},
        extra="second-order",
        requires=("pytorch_optimizer", "opt_einsum"),
    ),
    Method(
        "soap",
        "SOAP (pytorch-optimizer), betas (0.95, 0.95), eigenbases every 10 steps",
        lambda model, lr, **kw: pytorch_optimizer("SOAP", "soap")(model.parameters(), lr=lr, **kw),
        3e-3,
        {"precondition_frequency": 10, "weight_decay": 0.0},
        extra="second-order",
        requires=("pytorch_optimizer",),
    ),
    Method(
        "schedule-free-adamw",
        "Schedule-Free AdamW (pytorch-optimizer), betas (0.9, 0.999), no decay schedule, evaluated at the average",
        lambda model, lr, **kw: pytorch_optimizer("ScheduleFreeAdamW", "schedule-free-adamw")(
            model.parameters(), lr=lr, **kw
        ),
        3.16e-3,
        {"weight_decay": 0.0},
        extra="second-order",
        requires=("pytorch_optimizer",),
        scheduled=False,
    ),
]:
    register_method(_m)
