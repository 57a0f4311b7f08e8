"""``TermGradients``: the K per-term gradients of a composite loss, computed once and used three ways.

The one implementation of per-term gradients (:func:`term_gradients` and the set Gramians of gradients
computed elsewhere, :func:`set_gramians`, are views of it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from .._measuring import measuring
from ._gramian import embed, gramian_block, sum_blocks
from ._linear import LinearCapture, LinearFactor, plan_factors

__all__ = ["TermGradients", "set_gramians", "term_gradients"]


class TermGradients:
    """∂L_k/∂p for K loss terms and a list of parameters: one partial backward per term.

    Each term back-propagates only through the part of the graph below it. The weight of an
    ``nn.Linear`` call kept by a :class:`LinearCapture` (and that qualifies, see
    :func:`plan_factors`: among others, only where that costs fewer flops) is held as (A, Δ_1..Δ_K)
    instead: the backward stops at the layer's output and the gradients Δ_kᵀA are formed only if
    asked for (:meth:`rows`). Everything else is exact either way. ``update``: the indices that
    :meth:`weighted_sum` will be called for (their update's cost counts in the choice).

    The same numbers serve the weighting (:meth:`rows`), the telemetry (:meth:`gramians`) and the
    update (:meth:`weighted_sum`, which may overwrite the stored gradients: call it last).
    """

    def __init__(
        self,
        losses: Mapping[str, Tensor],
        params: Sequence[Tensor],
        capture: LinearCapture | None = None,
        *,
        retain_graph: bool = False,
        update: Collection[int] = (),
    ) -> None:
        self.terms = list(losses)
        self.params = list(params)
        self.factors: dict[int, LinearFactor] = {
            f.weight: f for f in plan_factors(capture, losses, self.params, update)
        }
        dense = [i for i in range(len(self.params)) if i not in self.factors]
        # parameters, then the factored layers' output edges (autograd.grad takes a mix of both)
        inputs = cast(list[Tensor], [self.params[i] for i in dense] + [f.output for f in self.factors.values()])
        self.dense: list[list[Tensor | None]] = []  # [term][param]; None where factored or not reached
        for t, name in enumerate(self.terms):
            loss = losses[name]
            gs: Sequence[Tensor | None] = [None] * len(inputs)
            if loss.requires_grad:
                keep = retain_graph or t < len(self.terms) - 1
                with measuring():  # not the step's backward: LocoProp's and K-FAC's capture hooks skip it
                    gs = torch.autograd.grad(loss, inputs, retain_graph=keep, allow_unused=True)
            row: list[Tensor | None] = [None] * len(self.params)
            for i, g in zip(dense, gs, strict=False):
                row[i] = g
            for f, g in zip(self.factors.values(), gs[len(dense) :], strict=True):
                f.add_delta(g)
            self.dense.append(row)

    @classmethod
    def from_rows(cls, terms: Sequence[str], rows: Sequence[Sequence[Tensor | None]]) -> TermGradients:
        """Gradients computed elsewhere: ``rows[k][i]`` is ∂L_k/∂params[i] (None where it does not reach)."""
        self = cls.__new__(cls)
        self.terms, self.params, self.factors = list(terms), [], {}
        self.dense = [list(r) for r in rows]
        return self

    def rows(self, indices: Sequence[int]) -> dict[str, list[Tensor | None]]:
        """``{term: [∂L_term/∂params[i] for i in indices]}`` (None where the term does not reach it)."""
        out = {}
        for t, name in enumerate(self.terms):
            out[name] = [self.factors[i].weight_rows()[t] if i in self.factors else self.dense[t][i] for i in indices]
        return out

    def gramians(self, sets: Mapping[str, Sequence[int]], update: Collection[int] = ()) -> dict[str, Tensor]:
        """``{S: G_S}`` (K × K, float64 on the CPU) for sets of indices into :attr:`params`.

        ``update``: the indices that :meth:`weighted_sum` will be called for, so that a Linear weight
        whose gradients are formed here anyway gets its update from them (no second product).
        """
        k = len(self.terms)
        blocks: dict[int, Tensor] = {}
        for i in sorted({i for idx in sets.values() for i in idx}):
            factor = self.factors.get(i)
            if factor is not None:
                if factor.present:
                    if not factor.prefer_factored(update=i in update):
                        factor.weight_rows()
                    blocks[i] = factor.weight_gramian(k)
                continue
            present = [t for t in range(k) if self.dense[t][i] is not None]
            if present:
                blocks[i] = embed(gramian_block([cast(Tensor, self.dense[t][i]) for t in present]), present, k)
        return sum_blocks(blocks, sets, k)

    def weighted_sum(self, i: int, coef: Sequence[float]) -> Tensor | None:
        """Σ_k coef[k] ∂L_k/∂params[i], or None when no term reaches it. May reuse (overwrite) stored gradients."""
        factor = self.factors.get(i)
        if factor is not None:
            return factor.weighted_weight(coef)
        acc: Tensor | None = None
        for t in range(len(self.terms)):
            g = self.dense[t][i]
            if g is None:
                continue
            if acc is None:
                acc = g.mul_(coef[t]) if coef[t] != 1.0 else g
            else:
                acc.add_(g, alpha=coef[t])
            self.dense[t][i] = None  # consumed
        return acc

    def all_reduce_mean(self, group: Any) -> None:
        """Average the stored gradients over the processes of ``group`` (needs no factored parameter)."""
        from .._distributed import all_reduce_mean

        if self.factors:
            raise RuntimeError(
                "TermGradients.all_reduce_mean: factored Linear weights cannot be averaged; build "
                "TermGradients without a capture under torch.distributed."
            )
        all_reduce_mean([g for row in self.dense for g in row if g is not None], group)


def term_gradients(
    losses: Mapping[str, Tensor], params: Sequence[Tensor], *, retain_graph: bool = False, zeros: bool = True
) -> dict[str, list[Tensor | None]]:
    """``{name: [∂L_name/∂p for p in params]}``: one ``torch.autograd.grad`` call per term (:class:`TermGradients`).

    Where a term does not reach a parameter the entry is a zero tensor, or ``None`` with ``zeros=False``.
    The graph is kept for every term but the last unless ``retain_graph``.
    """
    grads = TermGradients(losses, params, retain_graph=retain_graph)
    rows = grads.rows(range(len(grads.params)))
    if not zeros:
        return rows
    return {
        t: [torch.zeros_like(p) if g is None else g for p, g in zip(grads.params, r, strict=True)]
        for t, r in rows.items()
    }


def set_gramians(rows: Sequence[Sequence[Tensor | None]], sets: Mapping[str, Sequence[int]]) -> dict[str, Tensor]:
    """``{S: G_S}`` where ``rows[k][i]`` is the gradient of term k w.r.t. parameter i (None: zero).

    G_S = Σ_{i∈S} J_i J_iᵀ; each parameter's block is computed once however many sets hold it
    (:meth:`TermGradients.gramians`); returned on the CPU in float64.
    """
    return TermGradients.from_rows([str(k) for k in range(len(rows))], rows).gramians(sets)
