"""Find LocoProp's (layer, activation) pairs in a model: declared, from ``nn.Sequential`` order, or
by ``torch.fx`` tracing; reject what has no single local problem; list the parameters left over.

A layer has a single local problem only when it runs once per forward pass and owns its
parameters: a module called twice (a shared layer) or a weight tied to another module (an output
head tied to the embedding) is rejected with the fix (``exclude=[...]`` hands it to
``other_optimizer``).
"""

from __future__ import annotations

import dis
import inspect
import os
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .._owners import parameter_owners
from ._activations import Activation, get_activation
from ._layers import SUPPORTED_LAYERS, LocalLayer, check_layer
from ._recognise import activation_for_call, activation_for_module
from ._torch_layers import composite_layers, opaque_reason

__all__ = ["LayerSpec", "find_layers", "leftover_parameters"]

LayerSpec = tuple[nn.Module, "str | Activation"]
Pairs = list[tuple[nn.Module, Activation]]


def _is_layer(m: nn.Module) -> bool:
    """Exactly ``nn.Linear`` or ``nn.Conv2d`` (a subclass may compute something else in ``forward``)."""
    return type(m) in SUPPORTED_LAYERS


def _leaves(seq: nn.Sequential) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in seq:
        out.extend(_leaves(child) if isinstance(child, nn.Sequential) else [child])
    return out


def _from_sequential(leaves: list[nn.Module], names: dict[nn.Module, str]) -> Pairs:
    pairs: Pairs = []
    for i, m in enumerate(leaves):
        if _is_layer(m):
            act = activation_for_module(leaves[i + 1], names[m]) if i + 1 < len(leaves) else None
            pairs.append((m, act or get_activation("identity")))
    return pairs


_FX_DIR = os.path.dirname(torch.fx.__file__)


class _Tracer(torch.fx.Tracer):
    """``torch.fx`` tracing that also follows asserts (``assert t <= block_size``) and, on a retry,
    buffers (a causal-mask buffer sliced by the sequence length, as nanoGPT does)."""

    def __init__(self, proxy_buffers: bool = False) -> None:
        super().__init__()
        self.proxy_buffer_attributes = proxy_buffers

    def to_bool(self, obj: torch.fx.Proxy) -> bool:
        """An ``assert`` on a traced value passes (the real forward still checks it); other control flow
        on a traced value cannot be traced."""
        frame = inspect.currentframe()
        while frame is not None and frame.f_code.co_filename.startswith((_FX_DIR, __file__)):
            frame = frame.f_back
        if frame is not None:
            code = list(dis.get_instructions(frame.f_code))
            at = next((i for i, inst in enumerate(code) if inst.offset == frame.f_lasti), None)
            if at is not None and at + 1 < len(code) and "IF_TRUE" in code[at].opname:
                if code[at + 1].opname == "LOAD_ASSERTION_ERROR":
                    return True
        return super().to_bool(obj)


def _accessor(name: str) -> str:
    """``'h.0.attn.c_attn'`` → ``'model.h[0].attn.c_attn'``."""
    return "model" + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in name.split("."))


def _declare_example(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if _is_layer(m)][:2]
    pairs = ", ".join(f"({_accessor(n)}, 'identity')" for n in names) or "(model.fc1, 'tanh')"
    return f"LocoProp(model, layers=[{pairs}, ...], other_optimizer=...)"


def _trace(model: nn.Module) -> torch.fx.Graph:
    try:
        return _Tracer().trace(model)
    except Exception as first:  # tracing fails on data-dependent control flow
        try:
            return _Tracer(proxy_buffers=True).trace(model)
        except Exception:  # noqa: BLE001 - the first failure is the one to report
            pass
        raise ValueError(
            f"LocoProp could not trace {type(model).__name__} with torch.fx to find its layers and the "
            f"activation after each ({type(first).__name__}: {first}). Declare them instead, e.g. "
            f"{_declare_example(model)}: every nn.Linear/nn.Conv2d to train, each with the activation "
            "applied to its output ('identity' when there is none or it is GELU/SiLU; the names: "
            "layerwise.locoprop.activation_names())."
        ) from first


def _try_trace(model: nn.Module) -> torch.fx.Graph | None:
    """The traced graph when tracing works (to check declared layers' calls now), else ``None`` (checked
    at the first step instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _trace(model)
        except Exception:  # noqa: BLE001 - any tracing failure only postpones the check
            return None


def _from_trace(model: nn.Module, graph: torch.fx.Graph, names: dict[nn.Module, str]) -> Pairs:
    pairs: Pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        m = model.get_submodule(node.target)
        if not _is_layer(m):
            pairs.extend(composite_layers(m, node.target) or [])
            continue
        act: Activation | None = None
        users = list(node.users)
        if len(users) == 1 and users[0].args and users[0].args[0] is node:
            u = users[0]
            if u.op == "call_module":
                act = activation_for_module(model.get_submodule(u.target), names[m])
            elif u.op in ("call_function", "call_method"):
                act = activation_for_call(u.target, u.args, u.kwargs, names[m])
        pairs.append((m, act or get_activation("identity")))
    return pairs


def _calls(model: nn.Module, graph: torch.fx.Graph | None, leaves: list[nn.Module] | None) -> dict[int, int]:
    """How many times each module is called in one forward pass, by the trace or the Sequential order
    (the layers inside torch's transformer modules counted by their known structure)."""
    counts: dict[int, int] = {}
    called: list[nn.Module] = []
    if graph is not None:
        for node in graph.nodes:
            if node.op == "call_module":
                m = model.get_submodule(node.target)
                called += [m, *(layer for layer, _ in composite_layers(m, node.target) or [])]
    elif leaves is not None:
        called = leaves
    for m in called:
        counts[id(m)] = counts.get(id(m), 0) + 1
    return counts


def _opaque_owner(model: nn.Module, name: str, calls: dict[int, int]) -> tuple[str, nn.Module] | None:
    """The called ``torch.nn`` module that holds layer ``name`` and hides its calls from the trace."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        owner = ".".join(parts[:i])
        m = model.get_submodule(owner)
        if calls.get(id(m), 0) > 0:
            return owner, m
    return None


def _check_single_problem(
    model: nn.Module, layer: LocalLayer, calls: dict[int, int] | None, owners: dict[int, list[str]]
) -> None:
    name, module = layer.name, layer.module
    fix = (
        f"Pass exclude=[{name!r}] (with other_optimizer=...) to train it with a first-order optimizer, or "
        "restructure the model."
    )
    if calls is not None and calls.get(id(module), 0) > 1:
        raise ValueError(
            f"LocoProp layer {name!r} is called {calls[id(module)]} times in one forward pass (a shared "
            f"layer has no single local problem). {fix}"
        )
    if calls is not None and calls.get(id(module), 0) == 0 and _Tracer().is_leaf_module(module, name):
        hidden = _opaque_owner(model, name, calls)
        why = (
            f"it sits inside {hidden[0]!r}: {opaque_reason(hidden[1])}"
            if hidden
            else "its owner reads its weight directly or the forward pass does not use it"
        )
        raise ValueError(
            f"LocoProp layer {name!r} is never called as a module in the traced forward pass ({why}). Leave "
            "it out of layers=[...] and give its parameters to other_optimizer=...."
        )
    for p in module.parameters(recurse=False):
        others = [o for o in owners.get(id(p), []) if model.get_submodule(o) is not module]
        if others:
            raise ValueError(
                f"LocoProp layer {name!r} shares a parameter with {others[0]!r} (tied weights): its local "
                f"problem would ignore the other use. {fix}"
            )


def _excluded(model: nn.Module, exclude: Iterable[nn.Module | str]) -> set[int]:
    modules = dict(model.named_modules())
    out: set[int] = set()
    for item in exclude:
        if isinstance(item, str):
            if item not in modules:
                raise ValueError(
                    f"Invalid exclude entry {item!r}: not a module name of the model. Use names from "
                    "model.named_modules(), e.g. 'head'."
                )
            item = modules[item]
        if not isinstance(item, nn.Module):
            raise TypeError(f"Invalid exclude entry {item!r}: expected a submodule or its name.")
        out.add(id(item))
    return out


def find_layers(
    model: nn.Module, layers: Sequence[LayerSpec] | None, exclude: Iterable[nn.Module | str] = ()
) -> list[LocalLayer]:
    """The LocoProp layers of ``model``: ``layers`` if given, else ``nn.Sequential`` order, else fx tracing.

    A ``nn.Sequential`` of plain modules is read in order; one holding custom blocks is traced, so
    layers inside the blocks are found as in any other model. A layer followed by no known
    activation gets ``identity`` (its local loss is squared error). Modules in ``exclude`` (or
    their names) are left to ``other_optimizer``.
    """
    names = {m: n for n, m in model.named_modules()}
    skip = _excluded(model, exclude)
    graph: torch.fx.Graph | None = None
    leaves: list[nn.Module] | None = None
    if layers is not None:
        pairs: Pairs = []
        for i, spec in enumerate(layers):
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], nn.Module)):
                raise TypeError(
                    f"Invalid layers[{i}]={spec!r}: expected a (module, activation) pair such as (model.fc1, 'tanh')."
                )
            pairs.append((spec[0], get_activation(spec[1])))
        graph = _try_trace(model)
    elif _is_layer(model):  # the model is one layer (a linear or logistic regression)
        pairs = [(model, get_activation("identity"))]
    elif isinstance(model, nn.Sequential) and all(not list(m.children()) for m in _leaves(model)):
        leaves = _leaves(model)
        pairs = _from_sequential(leaves, names)
    else:
        graph = _trace(model)
        pairs = _from_trace(model, graph, names)
    calls = _calls(model, graph, leaves) if (graph is not None or leaves is not None) else None
    owners = parameter_owners(model)
    found: list[LocalLayer] = []
    seen: set[int] = set()
    for module, act in pairs:
        if module not in names:
            raise ValueError(
                f"A declared LocoProp layer ({type(module).__name__}) is not a submodule of the model. "
                "Declare modules of the model you pass."
            )
        if id(module) in skip:
            continue
        name = names[module] or "<model>"
        check_layer(module, name)
        if parametrize.is_parametrized(module) or not isinstance(getattr(module, "weight", None), nn.Parameter):
            raise ValueError(
                f"LocoProp layer {name!r} computes its weight (a parametrization or weight norm), so a "
                f"local step cannot write it. Pass exclude=[{name!r}] with other_optimizer=...."
            )
        if id(module) in seen:
            raise ValueError(f"LocoProp layer {name!r} is declared twice. Declare each layer once.")
        seen.add(id(module))
        trainable = [p.requires_grad for p in module.parameters(recurse=False)]
        if any(trainable) and not all(trainable):
            raise ValueError(
                f"LocoProp layer {name!r} has a frozen and a trainable parameter. Freeze both weight "
                "and bias (requires_grad_(False)) or neither."
            )
        if any(trainable):
            layer = LocalLayer(name, module, act)
            _check_single_problem(model, layer, calls, owners)
            found.append(layer)
    if not found:
        raise ValueError(
            f"LocoProp found no trainable nn.Linear or nn.Conv2d layer in {type(model).__name__}. "
            "Declare them with layers=[(module, activation), ...]."
        )
    return found


def leftover_parameters(model: nn.Module, layers: Iterable[LocalLayer]) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters of ``model`` that no LocoProp layer owns."""
    owned = {id(p) for layer in layers for p in layer.module.parameters(recurse=False)}
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in owned]
