"""LocoProp as a ``torch.optim.Optimizer`` (Amid, Anil, Warmuth, AISTATS 2022, arXiv 2106.06199)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function

from .._amp import grad_scaler_factor
from .._distributed import CollectiveFailure, all_reduce_sum, broadcast_module, collective, resolve_group
from ._capture import Capture, closure_records, modified_in_place, ran_wrong
from ._coverage import coverage
from ._discover import LayerSpec, find_layers, leftover_parameters
from ._eigenbasis import BASIS_KEYS, eigenbases, keep_eigenbases
from ._inner import inner_defaults
from ._layers import LocalLayer
from ._record import Record, verify_layers
from ._solvers import (
    Problem,
    keep_preconditioners,
    parameters_of,
    preconditioners,
    solve_iterative,
    solve_preconditioned,
)
from ._stats import LayerStats, layer_stats

__all__ = ["LocoProp"]

_SOLVERS = ("iterative", "exact", "precond")


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}={value!r}. Expected {expected}.")


def _as_weight(
    layer: LocalLayer, x: torch.Tensor, output: torch.Tensor, g: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(ŷ, â, g)`` in the layer's weight dtype (a no-op outside autocast)."""
    dtype = layer.weight.dtype
    return x.to(dtype), output.to(dtype), None if g is None else g.to(dtype)


def _reraise_unchanged(exc: BaseException) -> NoReturn:
    """Re-raise ``exc`` after the step's state was restored; a collective failure says so."""
    if isinstance(exc, CollectiveFailure):
        raise CollectiveFailure(
            f"{exc} This process's parameters, buffers and optimizer state are as they were before this step."
        ) from exc.__cause__
    raise exc


class LocoProp(torch.optim.Optimizer):
    r"""LocoProp: every layer solves its own local problem, matched to its activation.

    One forward pass records each layer's input ``ŷ`` and pre-activation ``â``; one backward pass
    gives ``g = ∂L/∂â`` (activation gradients only: no weight gradient is computed). Each layer then
    moves towards its local target, independently of the others:

    - ``variant="s"``: squared loss on pre-activations, target ``â − γg``;
    - ``variant="m"``: the matching loss of the layer's activation ``f``, target ``f(â) − γg``,
      local gradient ``f(W ŷ) − target``.

    With one inner SGD step of size ``η`` both equal a backprop SGD step of size ``ηγ``. See
    ``layerwise.locoprop._solvers`` for the three solvers (``iterative``, ``exact``, ``precond``).
    The defaults are the official notebook's (M, γ=10, T=10, TF1 RMSProp lr 1e-5, momentum 0.999,
    decay 0.9, eps 1e-5, inner lr ``lr·max(1 − k/T, 0.25)``, state kept across batches); see
    :meth:`official`. They are tuned for the paper's deep autoencoder. Measured starting points
    (``docs/locoprop-models.md``, with the table of which layers and activations LocoProp trains):
    for a CNN ``solver="precond", lr=10, steps=1, gamma=100, damping=10, refresh_every=25, momentum=0.9`` (with
    ``covariance_examples`` a quarter of the batch: the same loss at equal time for a 6% cheaper step); for a
    transformer LM ``solver="iterative", inner="adam", steps=1, gamma=1e4, inner_basis="eigen", refresh_every=10,
    basis_beta=0.6`` at AdamW's lr (γ grows with the positions a batch-mean loss averages over; in the identity basis
    the one-step update is Adam's on ∇W L, in the eigenbasis it is one-sided SOAP and led AdamW, SOAP and
    Schedule-Free AdamW at equal wall-clock on the byte-level LM in 3 of 3 seeds); both with an AdamW
    ``other_optimizer`` for norms and embeddings.

    Args:
        model: the network. ``nn.Sequential`` needs no declaration (each ``nn.Linear``/``nn.Conv2d``
            takes the activation module that follows it, else identity); other models are traced with
            ``torch.fx`` unless ``layers`` declares the ``(module, activation)`` pairs.
        lr: inner learning rate (``iterative``, default 1e-5 as the official code) or step multiplier
            (``exact``/``precond``, default 1); per layer in ``param_groups``, so LR schedulers drive it.
        variant: ``"m"`` or ``"s"``.
        gamma: γ, the step towards the local target ("activation learning rate").
        steps: T, inner steps per batch (ignored by ``exact``).
        solver: ``"iterative"``, ``"exact"`` (S only) or ``"precond"``.
        damping: λ of the proximal term ``(λ/2)‖W − W_m‖²`` (needed > 0 by ``exact``/``precond``).
        inner: ``"tf-rmsprop"``, ``"sgd"``, ``"rmsprop"`` (torch semantics) or ``"adam"``.
        inner_options: options of ``inner`` (e.g. ``{"momentum": 0.9}``); others keep their defaults.
        inner_decay: decay the inner lr over the T steps as the official code does.
        inner_lr_floor: the floor of that decay (official 0.25).
        reset_inner_state: clear the inner rule's slots at every batch (official: kept).
        refresh_every: ``exact``/``precond`` reuse the inverse covariance, ``inner_basis="eigen"`` its basis, for this
            many steps.
        momentum: β of an outer momentum on the one-step solve's update ``d = ∇ (λI + c Σ ŷŷᵀ)⁻¹``
            (``exact``, or ``precond`` with ``steps=1``), Muon's Nesterov form: ``m ← βm + (1−β)d``, step
            ``lr·((1−β)d + βm)``. 0 (default): none.
        orthogonalize: replace that step by Muon's Newton–Schulz ``√max(1, rows/cols)·msgn(·)`` of each layer's
            ``(outputs, inputs[+bias])`` matrix: with ``momentum=0.95`` the update of Newton-Muon (Du & Su 2026),
            Muon right-preconditioned by the inverse input covariance. ``lr`` is then Muon's rate (e.g. 0.02).
        inner_dtype: the dtype of the two products of every ``iterative`` inner step (``z = W ŷ`` and
            ``Σ δ ŷᵀ``), e.g. ``torch.bfloat16`` (about twice as fast as float32 on CPUs with AVX512-BF16
            and on GPUs). ``ŷ`` is cast once per batch and ``W`` once per inner step; the residual, the
            update rule's state and the weights stay in the parameters' dtype (float32 accumulation,
            master weights). ``None`` (default): the parameters' dtype.
        inner_chunks: n. Inner step ``k`` of ``iterative`` uses only slice ``k mod n`` of ``n``
            contiguous, near-equal slices of the batch (along its first dimension), its local gradient
            scaled by ``batch / slice`` (unbiased when the batches are shuffled): each inner step costs
            about ``1/n`` of a full one. Needs ``steps >= n`` (every slice used) and batches of at least
            ``n``; when ``n`` does not divide ``steps`` the first slices get one step more.
            1 (default): every step sees the whole batch.
        inner_basis: ``"identity"`` (default) or ``"eigen"``: the ``iterative`` solver's inner rule runs on each
            layer's ``[W | b]`` in the eigenbasis ``Q`` of its input covariance ``Σ ŷŷᵀ``, where LocoProp-S's local
            Hessian is diagonal (gradient ``∇ Q``, step mapped back by ``Qᵀ``); ``Q`` from an average of the
            covariance, refreshed every ``refresh_every`` steps. With ``inner="adam", steps=1`` this is Adam in
            the K-FAC input factor's eigenbasis, one-sided SOAP (Vyas et al. 2024). See ``._eigenbasis``.
        basis_beta: β of that average over refreshes, ``C ← βC + (1−β) Σŷŷᵀ/tr``; 0: the refresh batch's alone.
        covariance_examples: n. A refresh (``exact``/``precond``, ``inner_basis="eigen"``) forms each layer's input
            covariance from the first n entries along its input's first dimension (the examples; rows where
            micro-batches of different shapes were merged), scaled by ``batch / n``: an unbiased estimate (the
            batches shuffled) at about n/batch of the cost, which on a CNN is most of the covariance's. With
            ``precond`` and ``steps > 1`` the estimate need not bound the local Hessian, so its steps may not
            decrease the local loss. ``None`` (default): the whole batch.
        layers: explicit ``(module, activation)`` pairs; activation is a registered name or an
            :class:`~layerwise.locoprop.Activation`.
        exclude: modules (or their names) LocoProp does not train even though it could find them:
            a head tied to the embedding, a shared layer, any layer you want trained first-order.
            Their parameters go to ``other_optimizer``.
        other_optimizer: builds a first-order optimizer for the trainable parameters LocoProp cannot
            handle (norms, embeddings, ``nn.MultiheadAttention``, ``exclude``), e.g.
            ``lambda ps: torch.optim.Adam(ps, 1e-3)``. Without it such parameters are an error: no
            parameter is silently left untrained.
        process_group: ``"auto"`` (default) sums the local problems over all processes when
            ``torch.distributed`` is initialised, so the update equals the single-process update on
            the concatenated batch (pass the plain model, not a ``DistributedDataParallel``
            wrapper); ``None`` never synchronises.
        record_stats: after every step, :attr:`step_stats` holds one
            :class:`~layerwise.locoprop.LayerStats` per layer: the update against the backprop gradient
            (cosine, norm ratio, first-order loss decrease) and what is left of the local problem. It costs
            one weight gradient and one layer forward per layer. The step's phases are also marked for
            ``torch.profiler`` (``LocoProp.forward``, ``.backward``, ``.other_optimizer``, ``.solve``,
            ``.covariance``, ``LocoProp.layer.<name>``), recorded or not.

    Three ways to step, the same update (to float64 rounding):

    - ``opt.step(lambda: loss_fn(model(x), y))``: a closure that returns the loss, a batch mean, without
      calling ``backward()``; the fast path (activation gradients only, no weight gradient).
    - ``loss.backward(); opt.step()``: the standard contract, inside any loop or framework. Hooks keep each
      layer's input, pre-activation and ``∂L/∂â`` from the backward pass; several backward passes before
      one step (gradient accumulation, each micro-batch loss divided by their number) give the step of
      the concatenated batch. ``zero_grad()`` drops them with the ``.grad`` of ``other_optimizer``'s
      parameters.
    - ``opt.step(closure)`` with a closure that calls ``backward()`` and returns the loss (PyTorch's
      convention, as for LBFGS; Lightning's automatic optimization).
    """

    # torch.amp.GradScaler.step sets grad_scale and found_inf instead of unscaling: LocoProp divides the
    # activation gradients it kept by the scale itself, and skips the step on inf.
    _step_supports_amp_scaling = True

    def __init__(
        self,
        model: nn.Module,
        lr: float | None = None,
        *,
        variant: str = "m",
        gamma: float = 10.0,
        steps: int = 10,
        solver: str = "iterative",
        damping: float = 0.0,
        inner: str = "tf-rmsprop",
        inner_options: dict[str, Any] | None = None,
        inner_decay: bool = True,
        inner_lr_floor: float = 0.25,
        reset_inner_state: bool = False,
        refresh_every: int = 1,
        momentum: float = 0.0,
        orthogonalize: bool = False,
        inner_dtype: torch.dtype | None = None,
        inner_chunks: int = 1,
        inner_basis: str = "identity",
        basis_beta: float = 0.6,
        covariance_examples: int | None = None,
        layers: Sequence[LayerSpec] | None = None,
        exclude: Iterable[nn.Module | str] = (),
        other_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
        process_group: object = "auto",
        record_stats: bool = False,
    ) -> None:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError(
                "LocoProp got a DistributedDataParallel model. Pass the plain module (model.module): "
                "LocoProp sums its local problems across processes itself."
            )
        if hasattr(model, "_orig_mod") and type(model).__name__ == "OptimizedModule":
            raise TypeError(
                "LocoProp got a torch.compile'd module: compiled code does not run the hooks LocoProp adds to "
                "its layers at every step, so it would see none of them. Pass the original module "
                "(LocoProp(model._orig_mod, ...), or the model before torch.compile) and call that module in "
                "the closure."
            )
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"LocoProp needs the model (an nn.Module) to find its layers, found {type(model).__name__}. "
                "Use LocoProp(model, ...), not LocoProp(model.parameters(), ...)."
            )
        if lr is None:
            lr = 1e-5 if solver == "iterative" else 1.0
        _check("lr", lr, isinstance(lr, (int, float)) and lr >= 0, "a number >= 0")
        _check("variant", variant, variant in ("s", "m"), "'s' or 'm'")
        _check("gamma", gamma, isinstance(gamma, (int, float)) and gamma > 0, "a number > 0")
        _check("steps", steps, isinstance(steps, int) and steps >= 1, "an integer >= 1")
        _check("solver", solver, solver in _SOLVERS, f"one of {_SOLVERS}")
        _check("damping", damping, isinstance(damping, (int, float)) and damping >= 0, "a number >= 0")
        _check("inner_lr_floor", inner_lr_floor, 0 <= inner_lr_floor <= 1, "a number in [0, 1]")
        _check("refresh_every", refresh_every, isinstance(refresh_every, int) and refresh_every >= 1, "an integer >= 1")
        if solver == "exact" and variant != "s":
            raise ValueError(
                "solver='exact' solves LocoProp-S only (its local problem is quadratic). "
                "Use variant='s', or solver='precond' for LocoProp-M."
            )
        _check("momentum", momentum, isinstance(momentum, (int, float)) and 0 <= momentum < 1, "a number in [0, 1)")
        _check("orthogonalize", orthogonalize, isinstance(orthogonalize, bool), "True or False")
        if (momentum or orthogonalize) and (solver == "iterative" or (solver == "precond" and steps != 1)):
            raise ValueError(
                f"momentum and orthogonalize act on the step of a one-step solve (solver='precond' with steps=1, or "
                f"solver='exact'), found solver={solver!r}, steps={steps}. Use solver='precond', steps=1, or drop "
                "them (an iterative solve has its own momentum: inner_options={'momentum': ...})."
            )
        if solver != "iterative" and damping <= 0:
            raise ValueError(
                f"solver={solver!r} needs damping > 0 (λ of (λI + Σ ŷŷᵀ)⁻¹), found damping={damping}. Try damping=1.0."
            )
        self.inner_options = inner_defaults(inner, inner_options)
        self.inner, self.variant, self.solver = inner, variant, solver
        self.inner_decay, self.inner_lr_floor = inner_decay, inner_lr_floor
        self.reset_inner_state, self.refresh_every = reset_inner_state, refresh_every
        if inner_dtype is not None and not (isinstance(inner_dtype, torch.dtype) and inner_dtype.is_floating_point):
            raise ValueError(
                f"Invalid inner_dtype={inner_dtype!r}: expected a floating torch.dtype such as torch.bfloat16, "
                "or None for the parameters' dtype."
            )
        if inner_dtype is not None and solver != "iterative":
            raise ValueError(
                f"inner_dtype applies to solver='iterative' only (solver={solver!r} inverts a covariance, which "
                "needs the parameters' precision). Drop inner_dtype or use solver='iterative'."
            )
        self.inner_dtype = inner_dtype
        if covariance_examples is not None:
            _check(
                "covariance_examples",
                covariance_examples,
                isinstance(covariance_examples, int)
                and not isinstance(covariance_examples, bool)
                and covariance_examples >= 1,
                "an integer >= 1, or None for the whole batch",
            )
            if solver == "iterative" and inner_basis != "eigen":
                raise ValueError(
                    f"covariance_examples={covariance_examples} applies to the input covariance that solver='precond' "
                    "or 'exact', or inner_basis='eigen', forms; this configuration (solver='iterative', "
                    f"inner_basis={inner_basis!r}) forms none. Drop covariance_examples, or use solver='precond' or "
                    "inner_basis='eigen'."
                )
        self.covariance_examples = covariance_examples
        _check("inner_chunks", inner_chunks, isinstance(inner_chunks, int) and inner_chunks >= 1, "an integer >= 1")
        if inner_chunks > 1 and solver != "iterative":
            raise ValueError(
                f"inner_chunks applies to solver='iterative' only (solver={solver!r} solves with the whole batch's "
                "input covariance). Drop inner_chunks or use solver='iterative'."
            )
        if inner_chunks > steps:
            raise ValueError(
                f"Invalid inner_chunks={inner_chunks} with steps={steps}: inner step k uses slice k mod "
                f"{inner_chunks}, so {inner_chunks - steps} slice(s) of every batch would never be used. "
                f"Use inner_chunks <= steps."
            )
        self.inner_chunks = inner_chunks
        _check("inner_basis", inner_basis, inner_basis in ("identity", "eigen"), "'identity' or 'eigen'")
        _check("basis_beta", basis_beta, isinstance(basis_beta, (int, float)) and 0 <= basis_beta < 1, "in [0, 1)")
        if inner_basis == "eigen" and (solver != "iterative" or inner_dtype is not None):
            raise ValueError(
                "inner_basis='eigen' runs the iterative solver's inner rule in the eigenbasis of each layer's input "
                f"covariance, in the parameters' dtype; found solver={solver!r}, inner_dtype={inner_dtype!r}. Use "
                "solver='iterative' and drop inner_dtype (the precond/exact solvers already invert that covariance)."
            )
        self.inner_basis, self.basis_beta = inner_basis, float(basis_beta)
        self.record_stats = bool(record_stats)
        self.step_stats: list[LayerStats] = []
        instance = isinstance(other_optimizer, torch.optim.Optimizer)
        if other_optimizer is not None and (instance or not callable(other_optimizer)):
            raise TypeError(
                "Invalid other_optimizer: expected a function that builds the optimizer from the parameters "
                f"LocoProp leaves over, found {type(other_optimizer).__name__}"
                f"{' (an instance: it would also update the layers LocoProp trains)' if instance else ''}. Pass "
                "other_optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-3) (or functools.partial(torch.optim.AdamW, "
                "lr=1e-3))."
            )
        self._layers = find_layers(model, layers, exclude)
        self._verified = False
        leftovers = leftover_parameters(model, self._layers)
        if leftovers and other_optimizer is None:
            names = ", ".join(n for n, _ in leftovers[:5]) + (" ..." if len(leftovers) > 5 else "")
            raise ValueError(
                f"LocoProp cannot train these parameters: {names} (LocoProp handles nn.Linear and "
                "nn.Conv2d layers). Pass other_optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-3) to "
                "train them with a first-order optimizer, or freeze them with requires_grad_(False). "
                "Which layers LocoProp trains, and recipes for CNNs and transformers: "
                "docs/locoprop-models.md."
            )
        groups = [
            {
                "params": list(layer.module.parameters(recurse=False)),
                "layer": layer.name,
                "activation": layer.activation.name,
            }
            for layer in self._layers
        ]
        defaults = {"lr": lr, "gamma": gamma, "steps": steps, "damping": damping}
        super().__init__(groups, defaults | {"momentum": momentum, "orthogonalize": orthogonalize})
        self.coverage = coverage(model, self._layers, [n for n, _ in leftovers])
        self._others = [p for _, p in leftovers]
        self.other_optimizer = other_optimizer(self._others) if other_optimizer is not None and leftovers else None
        self._group = resolve_group(process_group)
        self._buffers = list(model.buffers())  # BatchNorm's running statistics: restored by a rejected step
        broadcast_module(model, self._group)
        self._capture = Capture(self._layers)  # last: a failed construction leaves no hook on the model

    @classmethod
    def official(cls, model: nn.Module, **kwargs: Any) -> LocoProp:
        """The official notebook's LocoProp-M (google-research ``locoprop/``): every default, spelled out."""
        settings: dict[str, Any] = {
            "lr": 1e-5,
            "variant": "m",
            "gamma": 10.0,
            "steps": 10,
            "solver": "iterative",
            "damping": 0.0,
            "inner": "tf-rmsprop",
            "inner_decay": True,
            "inner_lr_floor": 0.25,
            "reset_inner_state": False,
            "inner_options": {"momentum": 0.999, "decay": 0.9, "eps": 1e-5},
        }
        settings.update(kwargs)
        return cls(model, **settings)

    @property
    def layers(self) -> list[tuple[str, str]]:
        """``(layer name, activation name)`` of every layer LocoProp trains, in order."""
        return [(layer.name, layer.activation.name) for layer in self._layers]

    def _closure_records(self, closure: Callable[[], Any]) -> tuple[Any, list[Record]]:
        """The step's own forward pass (and the closure's backward, if it runs one), recorded per layer."""
        with self._capture.pause():
            loss, records = closure_records(self._layers, closure)
        if not records or any(rec.grad is not None for rec in records):  # no layer ran, or it called backward()
            return loss, records
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(
                f"LocoProp's closure must return the scalar loss tensor, found {type(loss).__name__}"
                f"{'' if not isinstance(loss, torch.Tensor) else f' of shape {tuple(loss.shape)}'}."
            )
        if loss.grad_fn is None:
            raise ValueError(
                "LocoProp's closure returned a loss with no autograd graph and ran no backward pass through "
                "LocoProp's layers. Return the loss of a forward pass run with gradients enabled (LocoProp then "
                "backpropagates to the activations only), or call loss.backward() in the closure. No parameter "
                "was changed."
            )
        return loss, records

    def _check_versions(self, records: Sequence[Record]) -> list[str]:
        return [
            modified_in_place(layer.name)
            for layer, rec in zip(self._layers, records, strict=True)
            if rec.inputs._version != rec.version
        ]

    def _backward(self, loss: torch.Tensor, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        try:
            return torch.autograd.grad(loss, [*outputs, *self._others], allow_unused=True)
        except RuntimeError as exc:
            if "second time" in str(exc) or "does not require grad" in str(exc):
                raise RuntimeError(
                    "LocoProp could not differentiate the closure's loss: a backward() in the closure freed its "
                    "graph without passing through LocoProp's layers. Return the loss without calling backward() "
                    f"(the fast path), or backpropagate the loss of the model LocoProp was built on. ({exc})"
                ) from exc
            raise

    def _batch_scale(self, batch: int, device: torch.device) -> float:
        """``B_local / B_total``: this process's share of the global batch-mean loss."""
        if self._group is None:
            return 1.0
        total = torch.tensor([float(batch)], device=device)
        with collective("LocoProp.step"):
            dist.all_reduce(total, group=self._group)
        return batch / float(total)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One LocoProp update. ``opt.step(closure)``: the closure runs the forward pass and returns the loss,
        with or without calling ``backward()`` (without: the fast path, activation gradients only); returns the
        closure's loss. ``loss.backward(); opt.step()``: the batch of the backward passes since the last step or
        ``zero_grad()`` (several: gradient accumulation); returns ``None``."""
        unscale = self._grad_scaler_factor()
        if unscale is not None and bool(self.found_inf):  # type: ignore[attr-defined]
            self._capture.clear()  # the GradScaler skips this step: nothing changes, as for torch's optimizers
            return None
        saved = [b.detach().clone() for b in self._buffers]  # the forward pass updates BatchNorm's statistics
        try:
            loss, records, grads = self._batch(closure)
            n = len(records)
            scale = self._batch_scale(records[0].inputs.shape[0], records[0].inputs.device)
            if unscale is not None:
                for rec in records:
                    rec.grad = None if rec.grad is None else rec.grad * unscale
            with torch.no_grad():
                if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"LocoProp: the loss is {float(loss)}; no parameter or buffer (BatchNorm statistics) "
                        "was changed. Lower lr or gamma, or check the batch for NaN/inf."
                    )
                finite = [r.grad.isfinite().all() for r in records if r.grad is not None]
                if grads is None and finite and not bool(torch.stack(finite).all()):
                    raise FloatingPointError(
                        "LocoProp: the gradient of the loss with respect to a layer's output holds NaN/inf; no "
                        "parameter was changed. Lower lr or gamma, or check the batch for NaN/inf."
                    )
                inputs = [layer.prepare(rec.inputs) for layer, rec in zip(self._layers, records, strict=True)]
                self._check_chunks(inputs)
                if not self._verified:
                    verify_layers(self._layers, inputs, [rec.output for rec in records])
                    self._verified = True
                layer_grads = [r.grad for r in records] if grads is None else grads[:n]
                problems = [  # under autocast ŷ, â and g arrive in bf16/fp16: the local problem is the weight's dtype
                    self._problem(i, *_as_weight(self._layers[i], x, rec.output, g), scale)
                    for i, (x, rec, g) in enumerate(zip(inputs, records, layer_grads, strict=True))
                ]
                # formed before any parameter changes: a covariance that is not finite fails the step cleanly
                inverses = (
                    []
                    if self.solver == "iterative"
                    else preconditioners(problems, self.refresh_every, self._group, self.covariance_examples)
                )
                with record_function("LocoProp.covariance"):
                    bases = (
                        eigenbases(problems, self.refresh_every, self.basis_beta, self._group, self.covariance_examples)
                        if self.inner_basis == "eigen"
                        else None
                    )
        except BaseException as exc:
            with torch.no_grad():
                for b, s in zip(self._buffers, saved, strict=True):
                    b.copy_(s)
            _reraise_unchanged(exc)
        # Under data parallelism every inner step all-reduces: a peer that dies mid-step would leave this
        # process half-updated, so the step's starting state is kept until it completes.
        before = self._snapshot(saved) if self._group is not None else None
        start = [[t.detach().clone() for t in parameters_of(p)] for p in problems] if self.record_stats else []
        try:
            with torch.no_grad(), record_function("LocoProp.other_optimizer"):
                self._step_others(None if grads is None else grads[n:], scale, unscale)  # after every check
            with torch.no_grad(), record_function("LocoProp.solve"):
                if self.solver == "iterative":
                    solve_iterative(
                        problems,
                        self.inner,
                        self.inner_options,
                        self.inner_decay,
                        self.inner_lr_floor,
                        self._group,
                        self.inner_chunks,
                        bases,
                    )
                else:
                    solve_preconditioned(problems, inverses, 1 if self.solver == "exact" else None, self._group)
        except BaseException as exc:
            if before is None:
                raise
            self._restore(before)
            _reraise_unchanged(exc)
        if inverses:
            keep_preconditioners(problems, inverses)
        if bases is not None:
            keep_eigenbases(problems, bases)
        if self.record_stats:
            self.step_stats = self._stats(problems, start)
        return loss.detach() if isinstance(loss, torch.Tensor) else loss

    def _batch(self, closure: Callable[[], Any] | None) -> tuple[Any, list[Record], tuple[torch.Tensor, ...] | None]:
        """The closure's result, one record per layer, and the fast path's gradients (``None``: the records
        carry ``g`` from a backward pass, and ``other_optimizer``'s parameters have their ``.grad``)."""
        if closure is None:
            records = self._capture.take()
            if records is None:
                raise RuntimeError(
                    "LocoProp.step() found no backward pass through LocoProp's layers since the last step or "
                    "zero_grad(): call loss.backward() first (on a forward pass of the model LocoProp was built on, "
                    "with gradients enabled), or pass a closure: opt.step(lambda: loss_fn(model(x), y)). No "
                    "parameter was changed."
                )
            return None, records, None
        with record_function("LocoProp.forward"):
            loss, records = self._closure_records(closure)
        if not records:  # a closure that runs no layer (Lightning's manual optimization passes one): the backward
            kept = self._capture.take()  # passes since the last step are the batch, as for step()
            if kept is None:
                raise RuntimeError(ran_wrong("", 0, ran_none=True))
            return loss, kept, None
        for message in self._check_versions(records):
            raise RuntimeError(message)
        if any(r.grad is not None for r in records):
            # a closure that ran backward(): with the backward passes since zero_grad() (Lightning runs the
            # earlier micro-batches of an accumulated step outside step())
            merged = self._capture.take(records)
            assert merged is not None  # records holds one per layer
            return loss, merged, None
        self._capture.clear()  # the fast path: the closure's batch is the step's
        with record_function("LocoProp.backward"):
            return loss, records, self._backward(loss, [rec.output for rec in records])

    def _grad_scaler_factor(self) -> torch.Tensor | None:
        """``1 / scale`` when a ``torch.amp.GradScaler`` drives this step, else ``None``."""
        try:
            return grad_scaler_factor(
                self,
                "LocoProp",
                "Drop scaler.unscale_(opt) (LocoProp unscales what it reads itself; it does not read the weights' "
                "gradients, so clipping them has no effect on its layers).",
            )
        except RuntimeError:
            self._capture.clear()
            raise

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every gradient a step reads: the layers' and ``other_optimizer``'s ``.grad``, and the
        activation gradients kept from backward passes since the last step."""
        super().zero_grad(set_to_none)
        if self.other_optimizer is not None:
            self.other_optimizer.zero_grad(set_to_none)
        self._capture.clear()

    @torch.no_grad()
    def _stats(self, problems: list[Problem], start: list[list[torch.Tensor]]) -> list[LayerStats]:
        out = []
        for p, before in zip(problems, start, strict=True):
            grad = [t / p.group["gamma"] for t in p.layer.grads(p.x, p.delta0) if t is not None]  # δ0 = γ g
            out.append(layer_stats(p.layer.name, grad, before, parameters_of(p), (p.delta0, p.residual(1))))
        return out

    def _check_chunks(self, inputs: list[torch.Tensor]) -> None:
        n = self.inner_chunks
        if n == 1:
            return
        rows = min(x.shape[0] for x in inputs)
        steps = min(g["steps"] for g in self.param_groups)
        if rows < n or steps < n:
            found = (
                f"this batch has {rows} rows along its first dimension" if rows < n else f"a group has steps={steps}"
            )
            raise ValueError(
                f"inner_chunks={n} splits every batch into {n} slices, one per inner step in turn, but {found}; "
                f"no parameter was changed. Use batches of at least {n} and steps >= {n}, or a smaller inner_chunks."
            )

    def _snapshot(self, buffers: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, Any]]:
        return [p.detach().clone() for p in self._trained()], buffers, copy.deepcopy(self.state_dict())

    def _trained(self) -> list[torch.Tensor]:
        """Every parameter a step changes: the local layers' and ``other_optimizer``'s."""
        return [p for g in self.param_groups for p in g["params"]] + list(self._others)

    def _restore(self, snap: tuple[list[torch.Tensor], list[torch.Tensor], dict[str, Any]]) -> None:
        values, buffers, state = snap
        with torch.no_grad():
            for p, v in zip(self._trained(), values, strict=True):
                p.copy_(v)
            for b, s in zip(self._buffers, buffers, strict=True):
                b.copy_(s)
        self.state.clear()
        self.load_state_dict(state)

    def _problem(self, i: int, x: torch.Tensor, out: torch.Tensor, g: torch.Tensor | None, scale: float) -> Problem:
        layer, group = self._layers[i], self.param_groups[i]
        if g is None:
            raise RuntimeError(
                f"The loss does not depend on LocoProp layer {layer.name!r}'s output. "
                "Remove it from layers=[...] or freeze it."
            )
        if self.reset_inner_state:  # the inner rule's slots; a layer's eigenbasis is kept
            for p in group["params"]:
                self.state[p] = {k: v for k, v in self.state[p].items() if k in BASIS_KEYS}
        a = out.detach()
        step = g.mul(group["gamma"] * scale)
        matching = self.variant == "m"
        if self.inner_dtype is None or self.inner_dtype == x.dtype:
            return Problem(layer, group, self.state, x, a, step, matching)
        w0 = [layer.weight.detach().clone()] + ([layer.bias.detach().clone()] if layer.bias is not None else [])
        return Problem(layer, group, self.state, x, a, step, matching, x.to(self.inner_dtype), w0)

    def _step_others(
        self, grads: Sequence[torch.Tensor | None] | None, scale: float, unscale: torch.Tensor | None = None
    ) -> None:
        """Step ``other_optimizer`` on ``grads`` (the fast path's), or on the ``.grad`` a backward pass left
        (divided by a GradScaler's scale: ``unscale``)."""
        if self.other_optimizer is None:
            return
        for j, p in enumerate(self._others):
            g = p.grad if grads is None else grads[j]
            if g is not None and unscale is not None:
                g = g * unscale
            p.grad = torch.zeros_like(p) if g is None else (g if grads is None and scale == 1.0 else g.mul(scale))
        all_reduce_sum([p.grad for p in self._others if p.grad is not None], self._group)
        self.other_optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, with the inner rule's slots and the other optimizer's state."""
        sd = super().state_dict()
        if self.other_optimizer is not None:
            sd["other_optimizer"] = self.other_optimizer.state_dict()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a resumed run continues bit-identically)."""
        sd = dict(state_dict)
        other = sd.pop("other_optimizer", None)
        if (other is None) != (self.other_optimizer is None):
            raise ValueError(
                "This LocoProp state_dict was saved with"
                + ("out" if other is None else "")
                + " an other_optimizer, but this optimizer has"
                + (" one" if other is None else " none")
                + ". Build the optimizer as it was when it was saved."
            )
        super().load_state_dict(sd)
        if self.other_optimizer is not None:
            self.other_optimizer.load_state_dict(other)
