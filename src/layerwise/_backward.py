"""``layerwise.backward``: the drop-in replacement of ``loss.backward()`` for a dict of loss terms."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ._distributed import all_reduce_mean, resolve_group
from ._measuring import watched
from .terms import TermGradients, check_losses, check_params

if TYPE_CHECKING:
    from .telemetry import GradientTelemetry
    from .weighting import Weighting

__all__ = ["backward", "weighted_loss"]


def _union(*sets: Iterable[Tensor]) -> list[Tensor]:
    out, seen = [], set()
    for s in sets:
        for p in s:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _accumulate(params: list[Tensor], grads: list[Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        g = g.to(p.dtype)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.add_(g)


def backward(
    losses: Mapping[str, Tensor],
    weighting: Weighting | None = None,
    *,
    params: Iterable[Tensor],
    telemetry: GradientTelemetry | None = None,
    process_group: Any = "auto",
    backward_fn: Callable[[Tensor], Any] | None = None,
) -> Tensor:
    """Accumulate ``Σ_k w_k ∇L_k`` into ``p.grad`` for ``p in params``, like ``total.backward()``.

    The weights come from ``weighting`` (default: all 1). When the weighting needs per-term
    gradients (GradNorm, Usefulness) or ``telemetry`` is due this step, each term's gradient is
    computed ONCE (one partial backward per term, :class:`~layerwise.telemetry.TermGradients`) on
    the union of ``params``, the weighting's and the telemetry's parameter sets, and reused three
    ways: the weights, the telemetry record, and the update ``Σ_k w_k g_k``. With a telemetry built
    with ``model=``, the weights of its ``nn.Linear`` layers stay factored (A, Δ_k) where that is
    cheaper, and their update is one product (Σ_k w_k Δ_k)ᵀA. Otherwise it is one backward of the
    weighted total. Parameters of the weighting itself (Uncertainty, Naive) get their
    gradients from the total with the loss values held fixed. When ``LocoProp`` or ``KFAC`` (standard
    contract) trains some of ``params``, the per-term backward passes are measurements their hooks skip, and
    the update is one backward of the weighted total, which they read.

    Under ``torch.distributed`` (``process_group="auto"`` and an initialised group) the gradients
    and the loss values are averaged over the processes (equal per-process batches give exactly the
    single-process result on the whole batch). Use the plain model, not a ``DistributedDataParallel``
    wrapper: this function does the averaging.

    ``backward_fn`` hands the backward pass to a framework: ``backward_fn(Σ_k w_k L_k)`` with the weights
    detached, e.g. ``self.manual_backward`` (Lightning), ``accelerator.backward`` (Accelerate) or
    ``lambda t: scaler.scale(t).backward()`` (AMP), so its loss scaling, accumulation and DDP hooks apply. The
    weights and the telemetry are done here as without it (the weights from gradients averaged over the
    processes). The total handed over also carries the weighting's own gradients (a term of value 0 whose
    gradient is that of ``combine(L, w)`` with the loss values fixed), so they are scaled and accumulated as the
    model's are. The framework backpropagates into every leaf (not only ``params``) and averages the model's
    gradients itself (DDP). :func:`weighted_loss` returns that total instead, for a framework that
    backpropagates what the training step returns.

    Returns:
        The weighted total, detached (for logging).
    """
    from .weighting import Fixed

    checked = check_losses(losses)
    params = check_params(params)
    _warn_once_if_left_out(checked, params, weighting)
    group = resolve_group(process_group)
    record = telemetry is not None and telemetry.due()
    if weighting is None and not record:  # plain Σ_k L_k: one backward, no weighting object to build
        if telemetry is not None:
            telemetry.skip()
        total = torch.stack(list(checked.values())).sum()
        if backward_fn is not None:
            backward_fn(total)
        else:
            _plain_backward(total, params, group, keep=False)
        return total.detach()
    if weighting is None:
        weighting = Fixed.equal(list(checked), warn_useless=False, process_group=process_group)
    if not (weighting.needs_grads or record):
        if telemetry is not None:
            telemetry.skip()
        w = weighting.weights_for(checked)
        kept = weighting.check(checked)
        total = weighting.combine(weighting.stack(kept), w)
        if backward_fn is not None:
            backward_fn(_framework_total(weighting, kept, w))
            return total.detach()
        _plain_backward(total, params, group, keep=any(t.requires_grad for t in weighting.parameters()))
        _backward_weighting(weighting, checked, w)
        return total.detach()
    if backward_fn is None and watched(params):  # LocoProp / K-FAC read the update's backward pass: make it one
        own = [t for t in weighting.parameters() if t.requires_grad]
        backward_fn = lambda total: _plain_backward(total, _union(params, own), group, keep=False)  # noqa: E731
    active = weighting.check(checked)
    measured = check_params(telemetry.params, what="GradientTelemetry's parameters") if record and telemetry else []
    union = _union(params, weighting.grad_params, measured)
    capture = telemetry.capture if record and telemetry is not None and group is None else None
    index = {id(p): i for i, p in enumerate(union)}
    try:
        per_term = TermGradients(
            active,
            union,
            capture,
            update={index[id(p)] for p in params} if backward_fn is None else (),
            retain_graph=backward_fn is not None,
        )
    finally:
        if capture is not None:
            capture.clear()
    if group is not None:  # the weights (and telemetry) from the averaged gradients, the same on every process
        per_term.all_reduce_mean(group)
    w = weighting.weights_for(
        active, per_term.rows([index[id(p)] for p in weighting.grad_params]) if weighting.needs_grads else None
    )
    wd = w.detach()
    if telemetry is not None and not record:
        telemetry.skip()
    elif record and telemetry is not None:
        telemetry.record_terms(
            {t: weighting.synced(v.reshape(1))[0] for t, v in active.items()},
            per_term,
            {t: float(wd[weighting.terms.index(t)]) for t in active},
            update=[index[id(p)] for p in params],
        )
    if backward_fn is not None:
        backward_fn(_framework_total(weighting, active, w))
        return weighting.combine(weighting.stack(active), w).detach()
    coef_of = dict(zip(weighting.terms, wd.tolist(), strict=True))
    coef = [coef_of[t] for t in per_term.terms]
    for p in params:  # Σ_k w_k g_k, summed in place into the first term's fresh gradient (no zero buffers)
        acc = per_term.weighted_sum(index[id(p)], coef)
        if acc is None:
            continue
        if p.grad is None:
            p.grad = acc.to(p.dtype)
        else:
            p.grad.add_(acc)
    _backward_weighting(weighting, active, w)
    return weighting.combine(weighting.stack(active), w).detach()


def weighted_loss(
    losses: Mapping[str, Tensor],
    weighting: Weighting | None = None,
    *,
    params: Iterable[Tensor],
    telemetry: GradientTelemetry | None = None,
    process_group: Any = "auto",
) -> Tensor:
    """``Σ_k w_k L_k`` with the weights detached, for a framework to backpropagate (attached to the graph).

    What a Lightning ``training_step`` or a Hugging Face ``Trainer.compute_loss`` returns: the weights (and,
    when due, the telemetry's per-term gradients) are computed here exactly as :func:`backward` computes them,
    and the framework's own backward of the result (with its loss scaling, accumulation and DDP hooks) gives
    the ``.grad`` that ``backward(losses, weighting, params=params)`` gives, the weighting's own parameters
    (Uncertainty's s, Naive's w) included. Its value is ``Σ_k w_k L_k``; a weighting whose ``combine`` adds a
    regulariser (Uncertainty's Σ s_k) contributes that term's gradient, not its value.
    """
    handed: list[Tensor] = []
    backward(
        losses,
        weighting,
        params=params,
        telemetry=telemetry,
        process_group=process_group,
        backward_fn=handed.append,
    )
    return handed[0]


def _framework_total(weighting: Weighting, losses: Mapping[str, Tensor], w: Tensor) -> Tensor:
    """``Σ_k w_k L_k`` with ``w`` detached, plus ``c - c.detach()`` for ``c = combine(L fixed, w)`` when the
    weighting has parameters: value unchanged, gradient that of the weighting's own parameters."""
    values = weighting.stack(losses)
    total = (w.detach() * values).sum()
    if w.requires_grad:
        own = weighting.combine(weighting.synced(values), w)
        total = total + (own - own.detach())
    return total


_CHECKED: set[frozenset[int]] = set()  # the params= sets already checked for left-out parameters


def _graph_leaves(roots: Iterable[Any]) -> list[Tensor]:
    """The leaf tensors (``requires_grad``) that the autograd graphs from ``roots`` accumulate into."""
    seen: set[int] = set()
    stack = [r for r in roots if r is not None]
    out = []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if isinstance(variable, Tensor):
            out.append(variable)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return out


def _warn_once_if_left_out(losses: Mapping[str, Tensor], params: list[Tensor], weighting: Weighting | None) -> None:
    """Warn (once per ``params=`` set) when the losses depend on a trainable tensor that ``params`` leaves out:
    unlike ``loss.backward()``, ``layerwise.backward`` fills ``.grad`` of ``params`` only."""
    key = frozenset(id(p) for p in params)
    if key in _CHECKED:
        return
    _CHECKED.add(key)
    given = set(key) | ({id(p) for p in weighting.parameters()} if weighting is not None else set())
    missing = [v for v in _graph_leaves(t.grad_fn for t in losses.values()) if id(v) not in given]
    if missing:
        shapes = ", ".join(str(tuple(v.shape)) for v in missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.warn(
            f"layerwise.backward: the losses depend on {len(missing)} trainable tensor(s) that are not in "
            f"params= (shapes {shapes}); they get NO gradient, unlike with loss.backward(). Pass every "
            "parameter you train, e.g. params=[*model.parameters(), *heads.parameters()], or detach them / "
            "set requires_grad=False if that is intended. (Warned once for this params= set.)",
            UserWarning,
            stacklevel=3,
        )


def _plain_backward(total: Tensor, params: list[Tensor], group: Any, *, keep: bool) -> None:
    """``total.backward()`` restricted to ``params``; under ``torch.distributed`` the gradients are averaged."""
    if group is None:
        torch.autograd.backward(total, inputs=params, retain_graph=keep)  # accumulates into .grad
        return
    gs: Sequence[Tensor | None] = torch.autograd.grad(total, params, allow_unused=True, retain_graph=keep)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs, strict=True)]
    all_reduce_mean(grads, group)
    _accumulate(params, grads)


def _backward_weighting(weighting: Weighting, losses: Mapping[str, Tensor], w: Tensor) -> None:
    """Gradients of the weighting's own parameters (Uncertainty's s, Naive's w) with the loss values fixed."""
    if w.requires_grad:
        values = weighting.synced(weighting.stack(weighting.check(losses)))
        weighting.combine(values, w).backward()
