"""How LocoProp sees a batch: each layer's input ŷ, pre-activation â and ``g = ∂L/∂â``, three ways.

- **No-backward closure** (the fast path, :func:`closure_records`): hooks live only while the closure runs the
  forward pass; LocoProp then backpropagates to the activations alone (no weight gradient is formed).
- **A closure that calls ``backward()``** (PyTorch's convention, as LBFGS; Lightning's automatic optimization):
  the same hooks also catch ``g`` as the closure's backward passes through each layer.
- **The standard contract** ``loss.backward(); opt.step()`` (:class:`Capture`): persistent hooks keep, for every
  backward that passes through a layer, its ``(ŷ, â, g)``. Several backward passes before one step (gradient
  accumulation over micro-batches, each loss divided by their number) are concatenated along the batch, so the
  step is that of the concatenated batch. A forward pass that is never backpropagated (an evaluation with
  gradients on) leaves nothing behind: the record is made by the gradient hook, not the forward hook.

Every hook hands the model a copy of â, so an in-place op after the layer (``ReLU(inplace=True)``,
``out += identity``) rewrites the copy; an in-place change of ŷ is caught by its version counter.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .._measuring import is_measuring, watch
from ._layers import LocalLayer
from ._record import Record

__all__ = ["Capture", "closure_records", "merge_records", "modified_in_place", "ran_wrong"]

# The LocoProp that owns a module's persistent hook: a newer optimizer on the same model takes it over, so an
# old one still referenced somewhere neither clones outputs nor keeps activations. Weak both ways: a value that
# held its key's module would keep the entry, and the model, alive for ever.
_OWNER: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Capture]] = weakref.WeakKeyDictionary()


def ran_wrong(name: str, times: int, ran_none: bool, where: str = "the closure's forward pass") -> str:
    """The message for a layer that did not run exactly once per forward pass."""
    if times > 1:
        return (
            f"LocoProp layer {name!r} ran {times} times in {where}; it must run exactly "
            "once (a layer reused across time steps or branches has no single local problem). Pass "
            f"exclude=[{name!r}] with other_optimizer=..., or restructure the model. No parameter was changed."
        )
    if ran_none:
        return (
            f"None of LocoProp's layers ran in {where}: the closure must call the model "
            "LocoProp was built on, uncompiled (a torch.compile'd copy runs no hook), with gradients enabled "
            "(torch's transformer layers take a fused path that skips their Linears under no_grad). No "
            "parameter was changed."
        )
    return (
        f"LocoProp layer {name!r} did not run in {where} while other layers did: this "
        "forward skips it (a branch not taken, or an owner that reads its weight directly, as "
        f"nn.MultiheadAttention does). If it is never used, pass exclude=[{name!r}] with other_optimizer=...; "
        "if it is used only sometimes, it has no local problem on such batches. No parameter was changed."
    )


def modified_in_place(name: str) -> str:
    """The message for a layer whose input changed in place after the layer read it."""
    return (
        f"LocoProp layer {name!r}: its input was modified in place after the layer read "
        "it (an in-place op such as x.add_(...), x += ..., x.relu_() or an inplace=True module "
        "applied to the tensor the layer consumed), so its local problem would see another "
        "input. Make that operation out-of-place (inplace=False, x = x + ...); no parameter "
        "was changed."
    )


def _check_output(name: str, output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"LocoProp layer {name!r} returned {type(output).__name__}, not a tensor. "
            "Declare only nn.Linear/nn.Conv2d layers."
        )
    return output


def closure_records(layers: Sequence[LocalLayer], closure: Callable[[], Any]) -> tuple[Any, list[Record]]:
    """Run ``closure`` with each layer's call recorded (and ``g`` if the closure backpropagates); return its
    result and one record per layer, or none when no layer ran (an error unless every layer ran exactly once
    or none did)."""
    captured: dict[int, list[Record]] = {}
    grads: dict[int, torch.Tensor] = {}  # g of a backward() in the closure; the hook must not hold the output
    # (a tensor hook that references its own tensor is a cycle through C++ that Python never collects)

    def keep(i: int) -> Callable[[torch.Tensor], None]:
        def add(g: torch.Tensor) -> None:
            if not is_measuring():  # a telemetry's per-term backward is not the closure's gradient
                grads[i] = g if i not in grads else grads[i] + g

        return add

    def hook(i: int) -> Callable[..., torch.Tensor]:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> torch.Tensor:
            output = _check_output(layers[i].name, output)
            captured.setdefault(i, []).append(Record(inputs[0].detach(), inputs[0]._version, output))
            if output.requires_grad:
                output.register_hook(keep(i))
            return output.clone()

        return record

    handles = [layer.module.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.enable_grad():
            result = closure()
    finally:
        for h in handles:
            h.remove()
    if not captured:
        return result, []
    records = []
    for i, layer in enumerate(layers):
        got = captured.get(i, [])
        if len(got) != 1:
            raise RuntimeError(ran_wrong(layer.name, len(got), ran_none=False))
        got[0].grad = grads.get(i)
        records.append(got[0])
    return result, records


class _Hook:
    """The persistent forward hook of one layer: on a call that can be backpropagated, hands the model a copy
    of â and asks for ``g``, so that the backward pass files ``(ŷ, â, g)`` with the :class:`Capture`. A copied
    or unpickled model gets an inert hook (it holds only a weak reference, dropped on copy)."""

    def __init__(self, capture: Capture, i: int) -> None:
        self.capture: weakref.ref[Capture] | None = weakref.ref(capture)
        self.i = i

    def __call__(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        capture = self.capture() if self.capture is not None else None
        owner = _OWNER.get(module)
        if capture is None or capture.paused or owner is None or owner() is not capture:
            return None
        if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad):
            return None
        x, version, a = inputs[0].detach(), inputs[0]._version, output.detach()
        pending = capture.pending[self.i]
        output.register_hook(lambda g: None if is_measuring() else pending.append(Record(x, version, a, g)))
        return output.clone()

    def __getstate__(self) -> dict[str, Any]:
        return {"i": self.i}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.capture, self.i = None, state["i"]

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hook:
        copy = _Hook.__new__(_Hook)
        copy.__setstate__(self.__getstate__())
        return copy


class Capture:
    """Persistent hooks on ``layers`` that keep every backward pass's ``(ŷ, â, g)`` per layer until :meth:`take`
    or :meth:`clear`."""

    def __init__(self, layers: Sequence[LocalLayer]) -> None:
        self.layers = list(layers)
        self.pending: list[list[Record]] = [[] for _ in self.layers]
        self.paused = False
        for i, layer in enumerate(self.layers):
            _OWNER[layer.module] = weakref.ref(self)
            layer.module.register_forward_hook(_Hook(self, i))
            watch(layer.module.parameters(), self)

    @contextmanager
    def pause(self) -> Iterator[None]:
        """No capture inside (the step's own closure records the batch itself)."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def clear(self) -> None:
        for got in self.pending:
            got.clear()

    def take(self, last: Sequence[Record] = ()) -> list[Record] | None:
        """One record per layer: the backward passes since the last :meth:`clear`, then ``last`` (one record per
        layer, e.g. a closure's), concatenated along the batch; ``None`` when there is nothing. Clears."""
        batches = [[*got, last[i]] if last else list(got) for i, got in enumerate(self.pending)]
        counts = [len(got) for got in batches]
        if not any(counts):
            return None
        try:
            for layer, n in zip(self.layers, counts, strict=True):
                if n < max(counts):
                    raise RuntimeError(ran_wrong(layer.name, n, False, "the backward passes since the last step"))
            return [merge_records(layer, got) for layer, got in zip(self.layers, batches, strict=True)]
        finally:
            self.clear()


def merge_records(layer: LocalLayer, records: Sequence[Record]) -> Record:
    """The records of several micro-batches as one of the concatenated batch (a Linear's positions are rows)."""
    for rec in records:
        if rec.inputs._version != rec.version:
            raise RuntimeError(modified_in_place(layer.name))
    if len(records) == 1:
        return records[0]
    parts = [(r.inputs, r.output, r.grad) for r in records]
    if isinstance(layer.module, nn.Linear) and len({r.inputs.shape[1:] for r in records}) > 1:
        parts = [(x.reshape(-1, x.shape[-1]), a.reshape(-1, a.shape[-1]), g) for x, a, g in parts]
        parts = [(x, a, None if g is None else g.reshape(a.shape)) for x, a, g in parts]
    try:
        x = torch.cat([p[0] for p in parts])
        a = torch.cat([p[1] for p in parts])
        g = torch.cat([p[2] for p in parts])  # type: ignore[misc]
    except RuntimeError as exc:
        shapes = ", ".join(str(tuple(r.inputs.shape)) for r in records)
        raise ValueError(
            f"LocoProp layer {layer.name!r}: the {len(records)} backward passes since the last step saw inputs of "
            f"shapes {shapes}, which do not concatenate into one batch ({exc}). Accumulate micro-batches of "
            "one spatial size, or step after each. No parameter was changed."
        ) from None
    return Record(x, x._version, a, g)
