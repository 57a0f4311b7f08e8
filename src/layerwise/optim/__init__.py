"""Optimizers and schedules."""

from ._kfac import KFAC, Likelihood
from ._schedule import default_warmup_epochs, warmup_linear_decay

__all__ = ["KFAC", "Likelihood", "default_warmup_epochs", "warmup_linear_decay"]
