"""Penalty schedules for μ: the quadratic-penalty minimisers reach a true network only as μ grows."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["constant", "geometric"]


def constant(mu: float) -> Callable[[int], float]:
    """μ(k) = mu."""
    if not mu > 0:
        raise ValueError(f"Invalid mu={mu}: expected > 0.")
    return lambda k: mu


def geometric(start: float, factor: float, every: int, cap: float | None = None) -> Callable[[int], float]:
    """μ(k) = start · factor^⌊k/every⌋, at most ``cap`` (MAC: increasing μ; e.g. ×2 per epoch)."""
    if not (start > 0 and factor >= 1 and every >= 1):
        raise ValueError(
            f"Invalid schedule start={start}, factor={factor}, every={every}: expected start > 0, "
            "factor >= 1, every >= 1."
        )
    return lambda k: min(start * factor ** (k // every), cap if cap is not None else float("inf"))
