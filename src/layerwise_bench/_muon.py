"""Muon on the weight matrices and Adam on the rest, as one ``torch.optim.Optimizer``.

``torch.optim.Muon`` (Jordan et al. 2024, "Muon: MomentUm Orthogonalized by Newton-schulz")
accepts only 2-D parameters; its documentation recommends AdamW for biases, norms and heads. This
object holds both, so that one LR scheduler scales both groups (the Adam rate keeps its ratio to
Muon's) and one ``state_dict`` checkpoints both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["MuonAdam"]


class MuonAdam(torch.optim.Optimizer):
    """``torch.optim.Muon(matrices, lr)`` with ``torch.optim.Adam(others, adam_lr)``.

    Args:
        model: its 2-D parameters go to Muon, all others to Adam.
        lr: Muon's learning rate.
        adam_lr: Adam's learning rate for the non-matrix parameters.
        momentum, nesterov, ns_steps, weight_decay: Muon's options (``weight_decay`` also Adam's,
            applied as AdamW when non-zero).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        *,
        adam_lr: float = 1e-3,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
    ) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        matrices = [p for p in params if p.ndim == 2]
        others = [p for p in params if p.ndim != 2]
        if not matrices:
            raise ValueError("MuonAdam: the model has no 2-D parameter for Muon; use Adam instead.")
        self.muon = torch.optim.Muon(
            matrices, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=weight_decay
        )
        self.adam = torch.optim.AdamW(others, lr=adam_lr, weight_decay=weight_decay) if others else None
        super().__init__(params, {"lr": lr})
        # The groups ARE the inner optimizers' group dicts: a scheduler writing group["lr"] drives both.
        self.param_groups = self.muon.param_groups + (self.adam.param_groups if self.adam else [])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """One step of both; ``closure`` is evaluated once."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        if self.adam is not None:
            self.adam.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adam": self.adam.state_dict() if self.adam else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adam"}:
            raise ValueError(
                f"MuonAdam.load_state_dict expects the keys 'muon' and 'adam' of MuonAdam.state_dict(), "
                f"found {sorted(state_dict)}."
            )
        self.muon.load_state_dict(state_dict["muon"])
        if self.adam is not None:
            self.adam.load_state_dict(state_dict["adam"])
        self.param_groups = self.muon.param_groups + (self.adam.param_groups if self.adam else [])
