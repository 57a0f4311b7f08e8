"""Per-term gradients of ``nn.Linear`` layers kept in factored form, g_k = Δ_kᵀ A (the "ghost" trick).

For a Linear layer z = A Wᵀ + b with inputs A (r × n_in rows) and term k's output gradient
Δ_k = ∂L_k/∂z (r × n_out), ∇_W L_k = Δ_kᵀ A and ∇_b L_k = 1ᵀ Δ_k. So, without forming any ∇_W L_k:

- the Gramian ⟨∇_W L_j, ∇_W L_k⟩ = tr(Aᵀ Δ_j Δ_kᵀ A) = ⟨Δ_j, P Δ_k⟩ with P = A Aᵀ (r × r);
- the update Σ_k w_k ∇_W L_k = (Σ_k w_k Δ_k)ᵀ A, one matrix product for all K terms.

Per-example gradient norms use the same identity ("ghost clipping", Goodfellow 2015; Li et al.,
ICLR 2022, arXiv:2110.05679); here it gives the K × K Gramian of a batch. The per-term partial
backward then only needs ∂L_k/∂z: autograd skips the K weight-gradient products. Which form is
cheaper depends on r, n_in, n_out and the number of terms reaching the layer; :class:`LinearFactor`
picks by a flop count. A layer qualifies only when its weight reaches the losses through that
single call, checked on the autograd graph every step (:func:`plan_factors`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

from ._gramian import embed, gramian_block

__all__ = ["LinearCapture", "LinearFactor", "factored_is_cheaper", "plan_factors"]

_MEMORY_BOUND = 4.0  # cost of one element of a dot product that streams from memory, in GEMM multiply-adds


@dataclass
class Capture:
    """Input of one ``nn.Linear`` call (with its version counter at that time) and the gradient edge of
    its output: the output itself is not kept (autograd frees a pre-activation it does not need)."""

    inputs: Tensor
    output: GradientEdge
    version: int


class LinearCapture:
    """Forward hooks on the ``nn.Linear`` layers of a model that keep the last call's input and output.

    A call is kept only while ``armed()`` is true and autograd is recording; :meth:`clear` drops
    everything (nothing is kept between measured steps). Only modules of exactly type ``nn.Linear``
    whose weight requires grad are hooked (a subclass may compute something else in ``forward``).
    """

    def __init__(self, model: nn.Module, armed: Callable[[], bool]) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"Invalid model: expected the nn.Module the losses come from, found {type(model).__name__}."
            )
        self.modules = [m for m in model.modules() if type(m) is nn.Linear and m.weight.requires_grad]
        self.calls: dict[nn.Linear, Capture] = {}
        self._armed = armed
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]

    def _hook(self, module: nn.Module, args: tuple[object, ...], output: object) -> None:
        if not (self._armed() and torch.is_grad_enabled()):
            return
        a = args[0] if args else None
        if isinstance(a, Tensor) and isinstance(output, Tensor) and output.requires_grad:
            self.calls[module] = Capture(a, get_gradient_edge(output), a._version)  # type: ignore[index]

    def clear(self) -> None:
        self.calls.clear()

    def remove(self) -> None:
        """Remove the hooks (and drop what they kept)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.calls.clear()


@dataclass
class LinearFactor:
    """Weight gradients of one Linear layer's terms as (A, Δ_1..Δ_K); ``weight`` indexes the parameter list.

    The bias stays with the other parameters: autograd gets its gradient 1ᵀΔ_k on the way to Δ_k.
    """

    weight: int
    inputs: Tensor  # r × n_in
    output: GradientEdge  # where the layer's output z enters the graph: an input of the per-term backward
    n_out: int
    deltas: list[Tensor | None] = field(default_factory=list)  # per term: r × n_out, None if it does not reach z
    _rows: list[Tensor | None] | None = None

    @property
    def present(self) -> list[int]:
        return [k for k, d in enumerate(self.deltas) if d is not None]

    def add_delta(self, delta: Tensor | None) -> None:
        self.deltas.append(None if delta is None else delta.reshape(-1, delta.shape[-1]))

    def weight_rows(self) -> list[Tensor | None]:
        """∇_W L_k = Δ_kᵀ A for every term (None where Δ_k is), formed once and cached."""
        if self._rows is None:
            self._rows = [None if d is None else d.T.mm(self.inputs.to(d.dtype)) for d in self.deltas]
        return self._rows

    def prefer_factored(self, update: bool) -> bool:
        """Whether the Gramian (and the update, when ``update``) cost fewer flops in factored form."""
        r, n_in = self.inputs.shape
        return factored_is_cheaper(len(self.present), r, n_in, self.n_out, update)

    def weight_gramian(self, k: int) -> Tensor:
        """K × K Gramian of the weight gradients, in at least float32 (factored unless the rows exist)."""
        present = self.present
        if self._rows is not None or not self.prefer_factored(update=False):
            rows = self.weight_rows()
            return embed(gramian_block([rows[t] for t in present]), present, k)  # type: ignore[misc]
        dtype = _dtype(self.inputs, *(self.deltas[t] for t in present))
        a = self.inputs.to(dtype)
        d = torch.stack([self.deltas[t].to(dtype) for t in present])  # type: ignore[union-attr]  # n × r × n_out
        pd = torch.matmul(a.mm(a.T), d)  # n × r × n_out
        g = d.flatten(1).mm(pd.flatten(1).T)
        return embed((g + g.T) / 2, present, k)

    def weighted_weight(self, coef: Sequence[float]) -> Tensor | None:
        """Σ_k c_k ∇_W L_k: a sum of the rows if they were formed, else one product (Σ_k c_k Δ_k)ᵀ A."""
        present = self.present
        if not present:
            return None
        if self._rows is not None:
            return _weighted([self._rows[t] for t in present], [coef[t] for t in present])
        s = _weighted([self.deltas[t] for t in present], [coef[t] for t in present], inplace=False)
        return s.T.mm(self.inputs.to(s.dtype))


def factored_is_cheaper(n: int, r: int, n_in: int, n_out: int, update: bool) -> bool:
    """Flop model for ``n`` terms reaching a Linear layer with ``r`` input rows: factored Gramian
    (P = AAᵀ, PΔ_k, ⟨Δ_j, PΔ_k⟩) and update (ΣwΔ)ᵀA, against forming the n gradients Δ_kᵀA, their
    n(n+1)/2 dot products (memory-bound) and their weighted sum."""
    factored = r * r * n_in + n * r * r * n_out + n * n * r * n_out + (r * n_in * n_out if update else 0)
    dense = n * r * n_in * n_out + _MEMORY_BOUND * n * (n + 1) / 2 * n_in * n_out + (n - 1) * n_in * n_out
    return factored < dense


def _dtype(*tensors: Tensor | None) -> torch.dtype:
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors if t is not None), torch.float32)


def _weighted(ts: Sequence[Tensor | None], coef: Sequence[float], *, inplace: bool = True) -> Tensor:
    acc: Tensor | None = None
    for t, c in zip(ts, coef, strict=True):
        assert t is not None
        if acc is None:
            acc = (t.mul_(c) if c != 1.0 else t) if inplace else t * c
        else:
            acc.add_(t, alpha=c)
    assert acc is not None
    return acc


def _graph(roots: Sequence[Tensor]) -> tuple[dict[object, int], dict[int, int]]:
    """Nodes of the autograd graph below ``roots``, each with the bit mask of the roots that reach it, and,
    per leaf tensor id, how many edges reach it. One pass over the edges, then one in topological order."""
    children: dict[object, list[object]] = {}
    indegree: dict[object, int] = {}
    uses: dict[int, int] = {}
    stack = []
    for r in roots:
        if r.grad_fn is not None and r.grad_fn not in children:
            children[r.grad_fn] = []
            indegree.setdefault(r.grad_fn, 0)
            stack.append(r.grad_fn)
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            variable = getattr(nxt, "variable", None)
            if isinstance(variable, Tensor):  # AccumulateGrad of a leaf
                uses[id(variable)] = uses.get(id(variable), 0) + 1
                continue
            children[node].append(nxt)
            indegree[nxt] = indegree.get(nxt, 0) + 1
            if nxt not in children:
                children[nxt] = []
                stack.append(nxt)
    masks = dict.fromkeys(children, 0)
    for k, r in enumerate(roots):
        if r.grad_fn is not None:
            masks[r.grad_fn] |= 1 << k
    ready = [n for n, d in indegree.items() if d == 0]
    while ready:
        done = ready.pop()
        for below in children[done]:
            masks[below] |= masks[done]
            indegree[below] -= 1
            if indegree[below] == 0:
                ready.append(below)
    return masks, uses


def plan_factors(
    capture: LinearCapture | None, losses: Mapping[str, Tensor], params: Sequence[Tensor], update: Collection[int] = ()
) -> list[LinearFactor]:
    """The captured Linear calls whose weights are handled in factored form this step.

    A call qualifies when its weight is in ``params``, its output is in the graph of ``losses``, its
    weight is used exactly once in that graph (so this call is its only use: no tied or shared
    weight, no second call), its input was not modified in place since the call, and the factored
    form costs fewer flops (:func:`factored_is_cheaper`, for the number of terms whose graph reaches
    the call, with the update when the weight's index is in ``update``). Anything else stays with
    autograd, which forms the weight gradient while its inputs are still in cache.
    """
    if capture is None or not capture.calls:
        return []
    index = {id(p): i for i, p in enumerate(params)}
    masks, uses = _graph(list(losses.values()))
    out = []
    for module, call in capture.calls.items():
        w = module.weight
        mask = masks.get(call.output.node, 0)
        if id(w) not in index or not mask or uses.get(id(w)) != 1:
            continue
        if call.inputs._version != call.version or call.inputs.shape[-1] != w.shape[1]:
            continue
        inputs = call.inputs.detach().reshape(-1, w.shape[1])
        if factored_is_cheaper(mask.bit_count(), inputs.shape[0], w.shape[1], w.shape[0], index[id(w)] in update):
            out.append(LinearFactor(index[id(w)], inputs, call.output, w.shape[0]))
    return out
