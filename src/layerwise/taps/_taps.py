"""Taps: capture the outputs of named submodules of any ``nn.Module`` with forward hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from torch import Tensor, nn

__all__ = ["TapRef", "Taps", "first_tensor"]


def first_tensor(output: Any) -> Tensor:
    """The tensor a tap keeps by default: the output itself, or the first element of a tuple/list.

    For ``nn.RNN``/``nn.GRU``/``nn.LSTM`` that is the ``(batch, time, hidden)`` (or ``(time, batch,
    hidden)``) output: the hidden state at every time step.
    """
    while isinstance(output, (tuple, list)):
        if not output:
            break
        output = output[0]
    if not isinstance(output, Tensor):
        raise TypeError(
            f"A tapped module returned {type(output).__name__}, not a tensor. Pass select=... to "
            "Taps to pick the tensor to keep from the output."
        )
    return output


class TapRef:
    """A zero-argument callable that reads one tap at call time (e.g. a teacher's activation as a target)."""

    def __init__(self, taps: Taps, name: str) -> None:
        self.taps, self.name = taps, name

    def __call__(self) -> Tensor:
        value = self.taps[self.name]
        if isinstance(value, list):
            raise TypeError(f"Tap {self.name!r} keeps every call (keep='all'); use taps.stacked({self.name!r}).")
        return value

    def __repr__(self) -> str:
        return f"TapRef({self.name!r})"


class Taps:
    """Forward hooks that keep the outputs of named submodules during the model's forward pass.

    A kept output that an in-place op rewrites later (``nn.ReLU(inplace=True)`` after a conv) is
    an error when read, not a silently different tensor: tap the module that applies the op.

    ``names`` are qualified module names (``dict(model.named_modules())`` keys), or a mapping from
    your own labels to them. Stored outputs are released at the start of every forward pass of
    ``model`` (so nothing accumulates between steps), by :meth:`clear`, and by :meth:`remove`
    (also called on leaving a ``with`` block).

    Args:
        model: the module whose forward pass triggers the taps.
        names: module names to tap, or ``{label: module name}``.
        select: maps a module's output to the tensor kept (default :func:`first_tensor`).
        keep: ``"last"`` keeps the latest output of each module; ``"all"`` keeps a list of every call
            within one forward pass (an ``nn.GRUCell`` stepped in a loop, a block reused).
        detach: keep detached tensors (monitoring only: no gradient flows back through them).

    Example::

        with Taps(model, ["encoder.0", "encoder.2"]) as taps:
            out = model(x)
            h1 = taps["encoder.0"]
    """

    def __init__(
        self,
        model: nn.Module,
        names: Iterable[str] | Mapping[str, str],
        *,
        select: Callable[[Any], Tensor] = first_tensor,
        keep: Literal["last", "all"] = "last",
        detach: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Invalid model: expected an nn.Module, found {type(model).__name__}.")
        if keep not in ("last", "all"):
            raise ValueError(f"Invalid keep={keep!r}. Expected 'last' or 'all'.")
        if isinstance(names, str):
            raise TypeError(
                f"Invalid names={names!r}: expected a list of module names, found one string. Wrap it: [{names!r}]."
            )
        labels = dict(names) if isinstance(names, Mapping) else {n: n for n in names}
        if not labels:
            raise ValueError("Invalid names: no module to tap. Pass at least one module name.")
        modules = dict(model.named_modules())
        unknown = [m for m in labels.values() if m not in modules or m == ""]
        if unknown:
            valid = ", ".join(repr(n) for n in modules if n)
            raise ValueError(f"Unknown module name(s) {unknown} in names. Valid names of this model: {valid}.")
        self.model, self.select, self.keep, self.detach = model, select, keep, detach
        self.labels = labels
        self._store: dict[str, Any] = {}
        self._versions: dict[int, int] = {}  # id of a kept tensor -> its version counter when kept
        self._handles = [model.register_forward_pre_hook(lambda *_: self.clear())]
        for label, module_name in labels.items():
            self._handles.append(modules[module_name].register_forward_hook(self._hook(label)))

    def _hook(self, label: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            value = self.select(output)
            if self.detach:
                value = value.detach()
            self._versions[id(value)] = value._version
            if self.keep == "all":
                self._store.setdefault(label, []).append(value)
            else:
                self._store[label] = value

        return hook

    def _check_unmodified(self, label: str, value: Tensor) -> None:
        if value._version != self._versions.get(id(value), value._version):
            raise RuntimeError(
                f"Tap {label!r}: the output of {self.labels[label]!r} was modified in place after it "
                "was recorded (an nn.ReLU(inplace=True) or `out += ...` that follows the module), so "
                "it no longer holds that module's output. Tap the module that applies the in-place "
                "op instead, or make it out-of-place (inplace=False)."
            )

    def __getitem__(self, label: str) -> Any:
        if label not in self.labels:
            raise KeyError(f"{label!r} is not tapped; tapped: {list(self.labels)}")
        if label not in self._store:
            raise KeyError(
                f"No output recorded for {label!r} yet: run a forward pass of the model first "
                "(outputs are released at the start of each forward pass and by clear())."
            )
        value = self._store[label]
        for v in value if isinstance(value, list) else [value]:
            self._check_unmodified(label, v)
        return value

    def stacked(self, label: str, dim: int = 1) -> Tensor:
        """The outputs of every call of a ``keep='all'`` tap, stacked along ``dim`` (time)."""
        import torch

        value = self[label]
        return torch.stack(value, dim=dim) if isinstance(value, list) else value

    def ref(self, label: str) -> TapRef:
        """A callable returning this tap's current output, e.g. as the target of :class:`MSETarget`."""
        if label not in self.labels:
            raise KeyError(f"{label!r} is not tapped; tapped: {list(self.labels)}")
        return TapRef(self, label)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter([(label, self[label]) for label in list(self._store)])

    def keys(self) -> list[str]:
        return list(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._store

    def clear(self) -> None:
        """Release every stored output."""
        self._store.clear()
        self._versions.clear()

    def remove(self) -> None:
        """Remove the hooks and release the stored outputs."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Taps({type(self.model).__name__}, {self.labels!r}, keep={self.keep!r}, detach={self.detach})"
