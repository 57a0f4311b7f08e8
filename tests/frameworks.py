"""The LocoProp the framework tests share (test_lightning.py, test_huggingface.py, test_accelerate.py): two inner
Adam steps, γ = 3, Adam for the rest, all at 1e-2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from layerwise import LocoProp


def small_locoprop(model: nn.Module, layers: Sequence[tuple[nn.Module, str]] | None = None) -> LocoProp:
    """LocoProp on ``model`` (its ``layers`` declared, or found by tracing)."""
    return LocoProp(
        model,
        layers=layers,
        lr=1e-2,
        steps=2,
        inner="adam",
        gamma=3.0,
        other_optimizer=lambda ps: torch.optim.Adam(ps, 1e-2),
    )
