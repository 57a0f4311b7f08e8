"""The weighting contract: ``total = weighting(losses)`` for a dict of named scalar loss terms."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._distributed import all_reduce_mean, resolve_group
from ..terms import CheckedLosses, check_losses, term_gradients

__all__ = ["Weighting"]


class Weighting(nn.Module):
    """Weights ``w_k`` for named loss terms ``L_k``; ``forward`` returns ``Σ_k w_k L_k`` (plus any regulariser).

    Subclasses implement :meth:`compute` (and, when they need per-term gradients on a parameter set,
    set ``needs_grads = True`` and ``grad_params``). The base class checks the terms (scalars,
    finite, the names given at construction), records the weight history, warns once when a term's
    weight stays near zero ("this loss contributes nothing; consider removing it") and supports
    :meth:`drop`. Under ``torch.distributed`` the loss values (and per-term gradients) that decide the
    weights are averaged over the process group, so every process holds the same weights.

    Args:
        terms: the names of the loss terms, in a fixed order.
        window: steps a weight must stay near zero before it is reported (default 100).
        tol: "near zero" means ``w_k ≤ tol · max_j w_j`` (default 1e-3).
        warn_useless: emit a ``UserWarning`` the first time a term is reported.
        history_limit: rows of :attr:`history` kept in memory (the latest; default 10,000; ``None``: all).
            ``state_dict`` keeps only the last ``window`` rows, which the useless-term check needs, so a
            checkpoint does not grow with the run; :attr:`recorded` counts every recorded step.
        process_group: ``"auto"`` (the default group when initialised), ``None``, or a group.
    """

    needs_grads: ClassVar[bool] = False

    def __init__(
        self,
        terms: Sequence[str],
        *,
        window: int = 100,
        tol: float = 1e-3,
        warn_useless: bool = True,
        history_limit: int | None = 10_000,
        process_group: Any = "auto",
    ) -> None:
        super().__init__()
        if isinstance(terms, str) or not all(isinstance(t, str) for t in terms):
            raise TypeError(f"Invalid terms={terms!r}: expected a list of term names, e.g. ['main', 'aux1'].")
        terms = list(terms)
        if not terms or len(set(terms)) != len(terms):
            raise ValueError(f"Invalid terms={terms!r}: expected at least one name, each once.")
        if window < 1 or not tol >= 0:
            raise ValueError(f"Invalid window={window} or tol={tol}: expected window >= 1 and tol >= 0.")
        if history_limit is not None and history_limit < window:
            raise ValueError(
                f"Invalid history_limit={history_limit}: expected None or at least window={window} rows "
                "(the useless-term check reads the last window rows)."
            )
        self.terms = terms
        self.window, self.tol, self.warn_useless = window, tol, warn_useless
        self.process_group = process_group
        self.grad_params: list[Tensor] = []
        self.history: list[dict[str, float]] = []
        self.history_limit = history_limit
        self.recorded = 0
        self.dropped: list[str] = []
        self._warned: set[str] = set()
        self._own_state: tuple[Tensor, int] | str | None = None  # see _watch_own_parameters

    # --- what subclasses implement -------------------------------------------------------------
    def compute(self, values: Tensor, grads: list[list[Tensor | None]] | None, active: Tensor) -> Tensor:
        """The weights of this step, shape ``(K,)``, from the (detached) loss values and, when
        ``needs_grads``, each term's gradient on ``grad_params`` (``None`` where the term does not reach a
        parameter). May update internal state. ``active`` is a 0/1 mask (0 for dropped terms)."""
        raise NotImplementedError

    def combine(self, values: Tensor, weights: Tensor) -> Tensor:
        """The total loss from the values and the weights (default ``Σ w_k L_k``)."""
        return (weights * values).sum()

    # --- the shared machinery ------------------------------------------------------------------
    @property
    def active(self) -> list[str]:
        """The terms not dropped."""
        return [t for t in self.terms if t not in self.dropped]

    def check(self, losses: Mapping[str, Tensor]) -> CheckedLosses:
        """Validated terms, in ``self.terms`` order; dropped terms are ignored if still passed."""
        losses = check_losses(losses)
        given = [k for k in losses if k not in self.dropped]
        if set(given) != set(self.active):
            raise ValueError(
                f"Loss terms do not match: this {type(self).__name__} was built for "
                f"{self.active}, but got {list(losses)}. Missing: "
                f"{sorted(set(self.active) - set(given))}; unexpected: {sorted(set(given) - set(self.active))}."
            )
        state = next(iter([*self.parameters(), *self.buffers()]), None)
        device = next(iter(losses.values())).device
        if state is not None and state.device != device:
            raise ValueError(
                f"This {type(self).__name__} is on {state.device} but the losses are on {device}. Move it "
                f"with the model: weighting.to({str(device)!r})."
            )
        return CheckedLosses((t, losses[t]) for t in self.active)  # validated: later checks are free

    def mask(self, like: Tensor) -> Tensor:
        return torch.tensor([t not in self.dropped for t in self.terms], dtype=like.dtype, device=like.device)

    def stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The ``(K,)`` vector of values in ``self.terms`` order (0 for dropped terms)."""
        first = next(iter(losses.values()))
        return torch.stack([losses[t] if t in losses else first.new_zeros(()).detach() for t in self.terms])

    def group(self) -> Any:
        return resolve_group(self.process_group)

    def synced(self, values: Tensor) -> Tensor:
        """Loss values averaged over the process group (identity without one)."""
        values = values.detach().clone()
        all_reduce_mean([values], self.group())
        return values

    def weights_for(
        self, losses: Mapping[str, Tensor], grads: Mapping[str, Sequence[Tensor | None]] | None = None
    ) -> Tensor:
        """Check the terms, compute this step's weights (updating state) and record them.

        ``grads``: per-term gradients on ``grad_params`` already computed (and averaged over the
        process group) by the caller, e.g. :func:`layerwise.backward`; computed here when ``None``.
        """
        return self._weights(self.check(losses), grads)

    def _weights(self, checked: dict[str, Tensor], grads: Mapping[str, Sequence[Tensor | None]] | None) -> Tensor:
        self._watch_own_parameters()
        values = self.synced(self.stack(checked))
        per_term: list[list[Tensor | None]] | None = None
        if self.needs_grads:
            if grads is None:
                grads = term_gradients(checked, self.grad_params, retain_graph=True)
                all_reduce_mean([g for t in self.active for g in grads[t] if g is not None], self.group())
            none: list[Tensor | None] = [None] * len(self.grad_params)
            per_term = [list(grads[t]) if t in grads and t not in self.dropped else none for t in self.terms]
        w = self.compute(values, per_term, self.mask(values)) * self.mask(values)
        self._record(w)
        return w

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``Σ_k w_k L_k`` with this step's weights (the weights' own update happens here too)."""
        checked = self.check(losses)
        return self.combine(self.stack(checked), self._weights(checked, None))

    #: steps with gradients on the weighting's own parameters but no change of them before it warns
    UNSTEPPED_STEPS: ClassVar[int] = 20

    def _watch_own_parameters(self) -> None:
        """Warn once when this weighting's own parameters (Uncertainty's, Naive's) get gradients step after
        step but never change: they are in no optimizer, their gradients pile up and the weights stay at
        their initial values. Stops watching (no more host syncs) once they have moved."""
        own = [p for p in self.parameters() if p.requires_grad]
        if not own or self._own_state == "moved":
            return
        snapshot = torch.cat([p.detach().reshape(-1) for p in own]).clone()
        if isinstance(self._own_state, tuple):
            last, still = self._own_state
            if not torch.equal(snapshot, last):
                self._own_state = "moved"
                return
            still = still + 1 if all(p.grad is not None for p in own) else 0
            if still == self.UNSTEPPED_STEPS:
                warnings.warn(
                    f"{type(self).__name__}: its parameters have received gradients for {still} steps but never "
                    "changed: they are in no optimizer, so the weights stay at their initial values while the "
                    "gradients pile up. Add them to your optimizer, e.g. torch.optim.Adam([*model.parameters(), "
                    "*weighting.parameters()]).",
                    UserWarning,
                    stacklevel=4,
                )
            self._own_state = (snapshot, still)
        else:
            self._own_state = (snapshot, 0)

    def _record(self, w: Tensor) -> None:
        row = dict(zip(self.terms, w.detach().double().cpu().tolist(), strict=True))
        self.history.append(row)
        self.recorded += 1
        if self.history_limit is not None and len(self.history) > self.history_limit:
            del self.history[: len(self.history) - self.history_limit]
        if self.warn_useless:
            for name in self.useless_terms():
                if name not in self._warned:
                    self._warned.add(name)
                    warnings.warn(self._useless_message(name), UserWarning, stacklevel=3)

    def _useless_message(self, name: str) -> str:
        if all(row[name] < 0 for row in self.history[-self.window :]):
            return (
                f"loss term {name!r}: its weight has been negative for the last {self.window} steps: this loss is "
                "being MAXIMISED; the weighting has collapsed (see Naive's warning)."
            )
        return (
            f"loss term {name!r}: its weight has stayed below {self.tol:g} x the largest weight for the last "
            f"{self.window} steps: this loss contributes nothing; consider removing it "
            f"(weighting.drop({name!r}) and stop computing it)."
        )

    def useless_terms(self) -> list[str]:
        """Active terms whose weight stayed ``≤ tol · max_j w_j`` (the largest POSITIVE weight) for each of the
        last ``window`` steps: near zero, or negative (a maximised loss)."""
        if len(self.history) < self.window:
            return []
        recent = self.history[-self.window :]
        out = []
        for t in self.active:
            if all(row[t] <= self.tol * max(max(row.values()), 0.0) or row[t] < 0 for row in recent):
                out.append(t)
        return out

    def summary(self) -> str:
        """One line per term: current weight, mean over the last ``window`` steps, and the verdict."""
        if not self.history:
            return f"{type(self).__name__}: no step yet"
        recent = self.history[-self.window :]
        useless = set(self.useless_terms())
        lines = []
        for t in self.terms:
            mean = sum(r[t] for r in recent) / len(recent)
            note = (
                " (dropped)"
                if t in self.dropped
                else (" -- this loss contributes nothing; consider removing it" if t in useless else "")
            )
            lines.append(f"{t}: weight {self.history[-1][t]:.4g}, mean over last {len(recent)} steps {mean:.4g}{note}")
        return "\n".join(lines)

    def drop(self, name: str) -> None:
        """Stop using term ``name``: its weight is 0 from now on and it may be left out of ``losses``."""
        if name not in self.terms:
            raise ValueError(f"Invalid name {name!r}: not one of the terms {self.terms}.")
        if name not in self.dropped:
            if len(self.active) == 1:
                raise ValueError(f"Cannot drop {name!r}: it is the last active term.")
            self.dropped.append(name)

    @property
    def current(self) -> dict[str, float]:
        """The latest recorded weights (empty before the first step)."""
        return dict(self.history[-1]) if self.history else {}

    def get_extra_state(self) -> Any:
        return {
            "history": [dict(r) for r in self.history[-self.window :]],
            "recorded": self.recorded,
            "dropped": list(self.dropped),
            "warned": sorted(self._warned),
        }

    def set_extra_state(self, state: Any) -> None:
        self.history = [dict(r) for r in state["history"]]
        self.recorded = int(state.get("recorded", len(self.history)))
        self.dropped = list(state["dropped"])
        self._warned = set(state["warned"])
