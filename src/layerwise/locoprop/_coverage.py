"""What share of a model's trainable parameters LocoProp trains, and who trains the rest and why.

A model whose layers LocoProp cannot see (torch's ``nn.MultiheadAttention`` reads its projection
weights directly; embeddings and norms are no ``nn.Linear``/``nn.Conv2d``) silently becomes a model
trained by ``other_optimizer``. The share is logged at construction and a warning is raised when it is
under :data:`SMALL_SHARE`.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence

from torch import nn

from ._layers import LocalLayer

__all__ = ["SMALL_SHARE", "Coverage", "coverage"]

SMALL_SHARE = 0.5
_log = logging.getLogger("layerwise.locoprop")


class Coverage:
    """Parameters LocoProp trains against all trainable ones, with the leftovers' owners by type."""

    def __init__(self, model: nn.Module, layers: Sequence[LocalLayer], leftovers: Iterable[str]) -> None:
        self.model_name = type(model).__name__
        trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
        self.layers = [layer.name for layer in layers]
        self.local = sum(p.numel() for layer in layers for p in layer.module.parameters(recurse=False))
        self.total = sum(trainable.values())
        owners: Counter[str] = Counter()
        for name in leftovers:
            owners[_owner_kind(model, name)] += trainable.get(name, 0)
        self.others = dict(owners.most_common())

    @property
    def share(self) -> float:
        """Fraction of the trainable parameters (by count) that LocoProp's local problems train."""
        return self.local / self.total if self.total else 0.0

    def __str__(self) -> str:
        shown = ", ".join(self.layers[:4]) + (f" and {len(self.layers) - 4} more" if len(self.layers) > 4 else "")
        text = (
            f"LocoProp trains {self.share:.1%} of {self.model_name}'s {self.total:,} trainable parameters "
            f"({len(self.layers)} layer(s): {shown})"
        )
        if self.others:
            rest = "; ".join(f"{kind}: {n:,}" for kind, n in self.others.items())
            text += f"; other_optimizer trains the rest ({rest})"
        return text + "."


def _owner_kind(model: nn.Module, param_name: str) -> str:
    """The outermost ``torch.nn`` module type that hides ``param_name`` from LocoProp, else its owner's type."""
    parts = param_name.split(".")[:-1]
    for i in range(1, len(parts) + 1):
        m = model.get_submodule(".".join(parts[:i]))
        if isinstance(m, nn.MultiheadAttention):
            return "nn.MultiheadAttention (reads its projection weights directly)"
    owner = model.get_submodule(".".join(parts)) if parts else model
    kind = type(owner)
    if kind in (nn.Linear, nn.Conv2d):
        return f"nn.{kind.__name__} left out (excluded, or not among the declared layers)"
    return f"nn.{kind.__name__}" if kind.__module__.startswith("torch.nn") else kind.__name__


def coverage(model: nn.Module, layers: Sequence[LocalLayer], leftovers: Iterable[str]) -> Coverage:
    """Log the share LocoProp trains; warn (naming the rest) when it is under :data:`SMALL_SHARE`."""
    cov = Coverage(model, layers, leftovers)
    _log.info("%s", cov)
    if cov.share < SMALL_SHARE:
        warnings.warn(
            f"{cov} Under {SMALL_SHARE:.0%}: most of the model is trained first-order. If that is not what "
            "you want, see which layers LocoProp can train in docs/locoprop-models.md (declare hidden ones "
            "with layers=[...], or write attention with nn.Linear projections).",
            UserWarning,
            stacklevel=3,
        )
    return cov
