"""Optimizers and schedules."""

from ._kfac import KFAC, Likelihood
from ._newton_schulz import NS_COEFFICIENTS, NS_EPS, newton_schulz
from ._schedule import default_warmup_epochs, warmup_linear_decay

__all__ = [
    "KFAC",
    "NS_COEFFICIENTS",
    "NS_EPS",
    "Likelihood",
    "default_warmup_epochs",
    "newton_schulz",
    "warmup_linear_decay",
]
