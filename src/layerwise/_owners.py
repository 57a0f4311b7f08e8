"""Which modules hold a parameter: more than one for tied weights (``head.weight = embed.weight``)."""

from __future__ import annotations

from torch import nn

__all__ = ["parameter_owners"]


def parameter_owners(model: nn.Module) -> dict[int, list[str]]:
    """Parameter id → the qualified names of every module of ``model`` that holds it directly."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for p in module._parameters.values():
            if p is not None and name not in owners.setdefault(id(p), []):
                owners[id(p)].append(name)
    return owners
