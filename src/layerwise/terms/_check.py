"""Validation of loss terms and parameter sets: once per step, at most one host synchronisation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

__all__ = ["CheckedLosses", "NonFiniteLoss", "check_losses", "check_params"]


class NonFiniteLoss(ValueError):
    """A loss term is NaN or infinite (training diverged); raised before anything is updated."""


class CheckedLosses(dict[str, Tensor]):
    """Loss terms that :func:`check_losses` validated: passing them again costs nothing."""


def check_losses(losses: Mapping[str, Tensor], *, what: str = "losses") -> CheckedLosses:
    """Validate a dict of loss terms: non-empty, string names, finite real scalars. Returns a plain dict.

    The finiteness check reads all K values in one host synchronisation (a second one only to name a
    non-finite term). Terms already validated (a :class:`CheckedLosses`) are returned as they are, so
    ``layerwise.backward``, the weighting and the telemetry validate a step's terms once.
    """
    if isinstance(losses, CheckedLosses):
        return losses
    if not isinstance(losses, Mapping):
        raise TypeError(
            f"Invalid {what}: expected a dict mapping term names to scalar tensors, "
            f"found {type(losses).__name__}. Pass e.g. {{'main': loss, 'aux1': aux}}."
        )
    if not losses:
        raise ValueError(f"Invalid {what}: the dict of loss terms is empty. Pass at least one term.")
    out = CheckedLosses()
    for name, value in losses.items():
        if not isinstance(name, str):
            raise TypeError(f"Invalid {what}: term names must be strings, found {name!r}.")
        if not isinstance(value, Tensor):
            raise TypeError(f"Invalid loss term {name!r}: expected a scalar tensor, found {type(value).__name__}.")
        if value.numel() != 1 or value.dim() > 1:
            raise ValueError(
                f"Invalid loss term {name!r}: expected a scalar tensor, found shape "
                f"{tuple(value.shape)}. Reduce it first, e.g. with .mean()."
            )
        out[name] = value.reshape(())
    values = [v.detach().to(torch.float64) for v in out.values()]
    if len({v.device for v in values}) == 1 and bool(torch.isfinite(torch.stack(values)).all()):
        return out
    for name, value in out.items():  # the failure path (or terms on several devices): name the term
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLoss(
                f"Invalid loss term {name!r}: its value is {v}. Nothing was updated; check the "
                "inputs and the learning rate of the step that produced it."
            )
    return out


def check_params(params: Iterable[Tensor], *, what: str = "params") -> list[Tensor]:
    """Validate a parameter set: a non-empty iterable of tensors that require gradients (deduplicated)."""
    if isinstance(params, Tensor):
        params = [params]
    out: list[Tensor] = []
    seen: set[int] = set()
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"Invalid {what}: expected tensors (e.g. model.parameters()), found {type(p).__name__}.")
        if not p.requires_grad:
            raise ValueError(
                f"Invalid {what}: a tensor of shape {tuple(p.shape)} does not require grad. "
                "Pass trainable parameters only (or leave out those frozen since)."
            )
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    if not out:
        raise ValueError(
            f"Invalid {what}: the parameter set is empty (an exhausted generator?). Pass a "
            "list, e.g. list(model.parameters())."
        )
    return out
