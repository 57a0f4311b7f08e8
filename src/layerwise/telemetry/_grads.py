"""Per-term gradients of a composite loss: the rows of the K × |θ| Jacobian, one partial backward each."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["NonFiniteLoss", "check_losses", "check_params", "term_gradients"]


class NonFiniteLoss(ValueError):
    """A loss term is NaN or infinite (training diverged); raised before anything is updated."""


def check_losses(losses: Mapping[str, Tensor], *, what: str = "losses") -> dict[str, Tensor]:
    """Validate a dict of loss terms: non-empty, string names, finite real scalars. Returns a plain dict."""
    if not isinstance(losses, Mapping):
        raise TypeError(
            f"Invalid {what}: expected a dict mapping term names to scalar tensors, "
            f"found {type(losses).__name__}. Pass e.g. {{'main': loss, 'aux1': aux}}."
        )
    if not losses:
        raise ValueError(f"Invalid {what}: the dict of loss terms is empty. Pass at least one term.")
    out: dict[str, Tensor] = {}
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
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLoss(
                f"Invalid loss term {name!r}: its value is {v}. Nothing was updated; check the "
                "inputs and the learning rate of the step that produced it."
            )
        out[name] = value.reshape(())
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
                "Pass trainable parameters only."
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


def term_gradients(
    losses: Mapping[str, Tensor], params: Sequence[Tensor], *, retain_graph: bool = False, zeros: bool = True
) -> dict[str, list[Tensor | None]]:
    """``{name: [∂L_name/∂p for p in params]}``: one ``torch.autograd.grad`` call per term.

    Each call only back-propagates through the part of the graph below that term. Where a term does
    not reach a parameter the entry is a zero tensor, or ``None`` with ``zeros=False`` (no memory
    traffic for it). The graph is kept for every term but the last unless ``retain_graph``.
    """
    names = list(losses)
    grads: dict[str, list[Tensor | None]] = {}
    for i, name in enumerate(names):
        keep = retain_graph or i < len(names) - 1
        loss = losses[name]
        if not loss.requires_grad:
            gs: Sequence[Tensor | None] = [None] * len(params)
        else:
            gs = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
        grads[name] = [torch.zeros_like(p) if g is None and zeros else g for p, g in zip(params, gs, strict=True)]
    return grads
