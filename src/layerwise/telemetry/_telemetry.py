"""``GradientTelemetry``: per-loss-term gradient norms, shares and cosines on named parameter sets, every N steps."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from torch import Tensor, nn

from ..terms import LinearCapture, NonFiniteLoss, TermGradients, check_losses, set_gramians
from ._sets import ParamSets, resolve_param_sets
from ._sinks import Sink
from ._snapshot import Snapshot

__all__ = ["GradientTelemetry"]


class GradientTelemetry:
    """Measure how K loss terms pull on the parameters: a :class:`Snapshot` every ``every`` steps.

    For each parameter set S and term k, with g_k = ∇_S L_k: the norms ‖g_k‖, the weighted shares
    |w_k|‖g_k‖ / Σ_j |w_j|‖g_j‖, the cosines and the Gramian G = J Jᵀ (see :class:`Snapshot`).
    Exact norms cost one partial backward per term (each term back-propagates only through the
    part of the graph below it); ``layerwise.backward(..., telemetry=tel)`` reuses those gradients
    for the update, so a measured step costs about K partial backwards instead of one backward.

    Args:
        param_sets: an ``nn.Module`` or an iterable of parameters (one set ``"all"``), or a mapping
            ``{name: module or parameters}``, e.g. ``{"all": model.parameters(), "shared":
            trunk.parameters(), "last_shared": trunk[-1].parameters()}``; see also :func:`layer_sets`.
        every: measure steps 0, every, 2·every, … (default 1: every step).
        sinks: where each snapshot also goes (:class:`CSVSink`, :class:`JSONLSink`, :class:`TensorBoardSink`).
        keep_history: keep every snapshot in :attr:`history` (default True; needed by :meth:`plot`).
        model: the module the losses come from (optional). Its ``nn.Linear`` layers get forward hooks
            that, on measured steps only, keep each call's input A and the graph edge of its output z.
            Where a flop count says it is cheaper, the per-term backward stops at z, and the weight's
            Gramian is ⟨Δ_j, A Aᵀ Δ_k⟩ and its update (Σ_k w_k Δ_k)ᵀA, with no per-term weight gradient
            formed (see :mod:`layerwise.terms`): same numbers, fewer flops when the batch is
            small next to the layer's width and several terms reach it. A layer whose weight is shared,
            tied or called twice is detected on the graph and measured the plain way. :meth:`close`
            removes the hooks.

    Standalone, before your own ``loss.backward()`` (the graph stays usable, ``.grad`` is untouched)::

        tel = GradientTelemetry({"all": model.parameters(), "head": model[-1]}, every=50)
        losses = {"main": main_loss, "aux": aux_loss}
        tel.measure(losses)              # a Snapshot on steps 0, 50, 100, …; None otherwise
        sum(losses.values()).backward()

    Warning: under AMP, pass unscaled losses (or divide the norms by the scale); under DDP the
    gradients measured are the local ones of this process (no all-reduce).
    """

    def __init__(
        self,
        param_sets: ParamSets,
        *,
        every: int = 1,
        sinks: Sequence[Sink] = (),
        keep_history: bool = True,
        model: nn.Module | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Invalid {every=}. Must be a whole number >= 1 (1 measures every step).")
        for sink in sinks:
            if not (callable(getattr(sink, "write", None)) and callable(getattr(sink, "close", None))):
                raise TypeError(
                    f"Invalid sink {sink!r}: expected an object with write(snapshot) and close(), "
                    "e.g. CSVSink('telemetry.csv')."
                )
        self.param_sets = resolve_param_sets(param_sets)
        index: dict[int, int] = {}
        self.params: list[Tensor] = []
        for params in self.param_sets.values():
            for p in params:
                if id(p) not in index:
                    index[id(p)] = len(self.params)
                    self.params.append(p)
        self._set_index = {name: [index[id(p)] for p in ps] for name, ps in self.param_sets.items()}
        self.every = every
        self.sinks = list(sinks)
        self.keep_history = keep_history
        self.step = 0
        self.history: list[Snapshot] = []
        self.terms: list[str] | None = None  # fixed by the first recorded step
        self.capture = None if model is None else LinearCapture(model, self.due)

    def __repr__(self) -> str:
        sets = {name: len(ps) for name, ps in self.param_sets.items()}
        return (
            f"GradientTelemetry(<param sets {sets} (tensors per set)>, every={self.every}, "
            f"sinks={self.sinks!r}, keep_history={self.keep_history})"
        )

    def state_dict(self) -> dict[str, Any]:
        """The step counter, the term names fixed by the first measured step, and the history (when kept):
        a resumed run measures the same steps and keeps one history. Sinks and hooks are not state."""
        return {
            "step": self.step,
            "every": self.every,
            "terms": None if self.terms is None else list(self.terms),
            "history": [snap.to_dict() for snap in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; nothing changes when it does not fit this telemetry."""
        missing = {"step", "every", "terms", "history"} - set(state)
        if missing:
            raise ValueError(
                f"Invalid GradientTelemetry state: missing {sorted(missing)}. Pass what state_dict() returned."
            )
        if state["every"] != self.every:
            raise ValueError(
                f"This GradientTelemetry state was saved with every={state['every']}, but this one has "
                f"every={self.every}. Build it with every={state['every']} to resume."
            )
        history = [Snapshot.from_dict(d) for d in state["history"]]
        self.step = int(state["step"])
        self.terms = None if state["terms"] is None else list(state["terms"])
        self.history = history if self.keep_history else []

    def due(self) -> bool:
        """Whether the next step will be measured: ``step % every == 0``."""
        return self.step % self.every == 0

    def skip(self) -> None:
        """Count a step without measuring it."""
        self.step += 1
        if self.capture is not None:
            self.capture.clear()

    def _check_terms(self, names: Collection[str]) -> list[str]:
        if self.terms is None:
            return list(names)
        if set(names) != set(self.terms) or len(names) != len(self.terms):
            raise ValueError(
                f"Loss terms changed at step {self.step}: the first measured step had {self.terms}, "
                f"this one has {list(names)}. Pass the same terms every step (pass a term that is "
                "sometimes absent as torch.zeros(())), or use a new GradientTelemetry."
            )
        return self.terms

    def record(
        self,
        losses: Mapping[str, Tensor | float],
        grads: Mapping[str, Sequence[Tensor | None]],
        weights: Mapping[str, float | Tensor] | None = None,
    ) -> Snapshot:
        """Measure this step from per-term gradients already computed over :attr:`params` (no autograd here).

        ``grads[k][i]`` is ∂L_k/∂params[i] (None or zeros where term k does not reach it). Counts the
        step, keeps the snapshot in :attr:`history` (if ``keep_history``) and writes it to the sinks.
        """
        terms = self._check_terms(list(losses))
        values = {t: _loss_value(t, losses[t]) for t in terms}
        if set(grads) != set(terms):
            raise ValueError(f"Invalid grads: expected gradients for the terms {terms}, found {list(grads)}.")
        for t in terms:
            _check_grads(t, grads[t], self.params)
        w = self._weights(terms, weights)
        return self._store(terms, values, w, set_gramians([grads[t] for t in terms], self._set_index))

    def record_terms(
        self,
        losses: Mapping[str, Tensor | float],
        grads: TermGradients,
        weights: Mapping[str, float | Tensor] | None = None,
        *,
        update: Collection[int] = (),
    ) -> Snapshot:
        """:meth:`record` from a :class:`TermGradients` over any parameter list that holds :attr:`params`.

        ``update``: indices into ``grads.params`` whose weighted sum will be formed after this call.
        """
        terms = self._check_terms(list(losses))
        values = {t: _loss_value(t, losses[t]) for t in terms}
        if sorted(grads.terms) != sorted(terms):
            raise ValueError(f"Invalid grads: expected gradients for the terms {terms}, found {grads.terms}.")
        index = {id(p): i for i, p in enumerate(grads.params)}
        missing = [i for i, p in enumerate(self.params) if id(p) not in index]
        if missing:
            raise ValueError(
                f"Invalid grads: telemetry.params{missing} are not among the parameters of the "
                "TermGradients. Build it over a list that holds telemetry.params."
            )
        sets = {name: [index[id(self.params[i])] for i in idx] for name, idx in self._set_index.items()}
        w = self._weights(terms, weights)
        perm = [grads.terms.index(t) for t in terms]
        gramians = {name: g[perm][:, perm] for name, g in grads.gramians(sets, update=update).items()}
        return self._store(terms, values, w, gramians)

    @staticmethod
    def _weights(terms: list[str], weights: Mapping[str, float | Tensor] | None) -> dict[str, float] | None:
        if weights is None:
            return None
        if set(weights) != set(terms):
            raise ValueError(f"Invalid weights: expected one weight per term {terms}, found {list(weights)}.")
        return {t: _float(weights[t]) for t in terms}

    def _store(
        self, terms: list[str], values: dict[str, float], w: dict[str, float] | None, gramians: dict[str, Tensor]
    ) -> Snapshot:
        snap = Snapshot.from_gramians(self.step, values, w, gramians)
        self.terms = terms
        self.step += 1
        if self.capture is not None:
            self.capture.clear()
        if self.keep_history:
            self.history.append(snap)
        for sink in self.sinks:
            sink.write(snap)
        return snap

    def measure(
        self, losses: Mapping[str, Tensor], weights: Mapping[str, float | Tensor] | None = None
    ) -> Snapshot | None:
        """In your own loop, before ``loss.backward()``: measure this step if :meth:`due`, else count it.

        Runs one ``torch.autograd.grad`` per term with ``retain_graph=True``, so the graph stays usable
        for your backward; ``.grad`` is not touched. Returns the snapshot, or None on a skipped step.
        """
        if not self.due():
            self.skip()
            return None
        checked = check_losses(losses)
        self._check_terms(list(checked))
        try:
            return self.record_terms(
                checked, TermGradients(checked, self.params, self.capture, retain_graph=True), weights
            )
        finally:
            if self.capture is not None:
                self.capture.clear()

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Write PNG plots of :attr:`history` to ``out_dir`` (needs matplotlib: ``layerwise[bench]``).

        ``norms_<set>.png`` (log scale, one line per term), ``weights.png`` when weights were recorded,
        ``cosines_<set>.png`` (heatmaps of the last snapshot and of the mean over snapshots).
        """
        from ._plot import plot_history

        return plot_history(self.history, out_dir)

    def close(self) -> None:
        """Close every sink and remove the forward hooks of ``model``."""
        if self.capture is not None:
            self.capture.remove()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> GradientTelemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _float(value: Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


def _loss_value(name: str, value: Tensor | float) -> float:
    if isinstance(value, Tensor) and value.numel() != 1:
        raise ValueError(f"Invalid loss term {name!r}: expected a scalar, found shape {tuple(value.shape)}.")
    v = _float(value)
    if not math.isfinite(v):
        raise NonFiniteLoss(
            f"Invalid loss term {name!r}: its value is {v}. Check the inputs and the learning rate "
            "of the step that produced it."
        )
    return v


def _check_grads(name: str, grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> None:
    if len(grads) != len(params):
        raise ValueError(
            f"Invalid grads[{name!r}]: expected {len(params)} tensors aligned with telemetry.params, "
            f"found {len(grads)}."
        )
    for i, (g, p) in enumerate(zip(grads, params, strict=True)):
        if g is not None and g.shape != p.shape:
            raise ValueError(
                f"Invalid grads[{name!r}][{i}]: shape {tuple(g.shape)}, but telemetry.params[{i}] has "
                f"shape {tuple(p.shape)}."
            )
