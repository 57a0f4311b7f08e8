"""Named parameter sets for telemetry: norms are measured on each set S, over the coordinates of S only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias, cast

from torch import Tensor, nn

from ..terms import check_params

__all__ = ["ParamSets", "layer_sets", "resolve_param_sets"]

ParamSets: TypeAlias = nn.Module | Iterable[Tensor] | Mapping[str, nn.Module | Iterable[Tensor]]


def layer_sets(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """One set per submodule that directly owns trainable parameters, named by its qualified name.

    ``layer_sets(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))`` is
    ``{"0": [weight, bias], "2": [weight, bias]}``; parameters of the root module itself go to ``"(root)"``.
    Combine with a whole-model set: ``{"all": model.parameters(), **layer_sets(model)}``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Invalid model: expected an nn.Module, found {type(model).__name__}.")
    sets: dict[str, list[nn.Parameter]] = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            sets[name or "(root)"] = own
    if not sets:
        raise ValueError(f"Invalid model: {type(model).__name__} has no trainable parameters.")
    return sets


def _one_set(name: str, params: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(params, nn.Module):  # frozen parameters of a module are skipped, not an error
        params = [p for p in params.parameters() if p.requires_grad]
    return check_params(params, what=f"param set {name!r}")


def resolve_param_sets(param_sets: ParamSets) -> dict[str, list[Tensor]]:
    """``{name: [tensors]}`` from a module or an iterable of tensors (one set ``"all"``) or a mapping of them.

    Every set is checked with :func:`check_params`; an empty set raises ``ValueError`` naming it.
    """
    if isinstance(param_sets, Mapping):
        if not param_sets:
            raise ValueError("Invalid param_sets: the mapping is empty. Pass e.g. {'all': model.parameters()}.")
        out: dict[str, list[Tensor]] = {}
        for name, params in param_sets.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Invalid param_sets: set names must be non-empty strings, found {name!r}.")
            out[name] = _one_set(name, params)
        return out
    if isinstance(param_sets, nn.Module | Iterable):  # a single tensor is an iterable too
        return {"all": _one_set("all", cast("nn.Module | Iterable[Tensor]", param_sets))}
    raise TypeError(
        f"Invalid param_sets: expected an nn.Module, an iterable of parameters or a mapping "
        f"{{name: parameters}}, found {type(param_sets).__name__}."
    )
