"""The methods of ``layerwise bench depth``, each a small runner over the public API around the same plain MLP.

A runner trains its model one batch ``(x, y, idx)`` at a time and probes ``‖∂L/∂W_t‖`` of every ``nn.Linear``'s
weight on a fixed batch without updating, ``L`` the objective the method descends: the global loss (backprop,
LocoProp), main + heads (deep supervision), each block's OWN term of eq. (3) (decoupled).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerwise import backward
from layerwise.decoupled import DecoupledTrainer, ForwardDeltaZ, ForwardZ, StoredZ, ZStore, geometric
from layerwise.locoprop import LocoProp
from layerwise.losses import LocalClassifier
from layerwise.taps import Taps
from layerwise.weighting import Fixed

from ..core._entry import Entry, table
from ._depth_model import blocks_of, build_mlp, linear_layers
from ._loop import MLPData, Trial, evaluate, supervised_losses

__all__ = ["DEPTH_METHODS", "DepthMethod", "DepthRun", "Runner", "grad_ratio", "make_runner"]

Batch = tuple[Tensor, Tensor, Tensor]


def grad_ratio(norms: list[float], mu: float | None = None) -> dict[str, Any]:
    """``max/min`` of per-layer gradient norms; ``None`` when a layer's norm is exactly 0 (then ``zero_layers``).
    ``mu``: the hidden terms' penalty weight at the probe (decoupled training), recorded with the norms."""
    zero = sum(1 for v in norms if v == 0.0)
    finite = all(math.isfinite(v) for v in norms)
    ratio = max(norms) / min(norms) if norms and zero == 0 and finite else None
    return {"norms": norms, "ratio": ratio, "zero_layers": zero, **({} if mu is None else {"mu": mu})}


def _norms(loss: Tensor, weights: Sequence[Tensor]) -> list[float]:
    grads = torch.autograd.grad(loss, list(weights), allow_unused=True)
    return [0.0 if g is None else float(g.norm()) for g in grads]


def _batches(x: Tensor, y: Tensor, size: int = 2000) -> list[Batch]:
    idx = torch.arange(len(x), device=x.device)
    return [(x[i : i + size], y[i : i + size], idx[i : i + size]) for i in range(0, len(x), size)]


@dataclass(frozen=True)
class DepthRun:
    """What a runner is built from besides its model: the run's depth, the config, the data (and who gets the
    trained network)."""

    depth: int
    cfg: Any
    data: MLPData
    on_model: Callable[[nn.Module], None] | None = None

    def sgd(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.cfg.sgd_lr, momentum=self.cfg.momentum)

    def adam(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.cfg.adam_lr, fused=True)


class Runner(Trial):
    """Backprop with one optimizer on the global loss, and the base of the other runners, which measures them alike:
    the plain network on the first ``eval_examples`` training examples and the test set after every epoch, and the
    per-layer gradient norms on the first ``probe_examples``."""

    def __init__(self, model: nn.Sequential, r: DepthRun, optimizer: torch.optim.Optimizer | None) -> None:
        self.model, self.r, self.optimizer = model, r, optimizer
        self.weights = [lin.weight for lin in linear_layers(model)]
        x, y = r.data.train_x, r.data.train_y
        self.ev, pn = min(r.cfg.eval_examples, len(x)), min(r.cfg.probe_examples, len(x))
        self.eval_batches = _batches(x[: self.ev], y[: self.ev])
        self.probe_batch = (x[:pn], y[:pn], torch.arange(pn, device=x.device))

    def batches(self) -> list[Batch]:
        """The whole training set in batches, with their rows."""
        return _batches(self.r.data.train_x, self.r.data.train_y)

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def norms(self, x: Tensor, y: Tensor, idx: Tensor) -> list[float]:
        """``‖∂L/∂W_t‖`` of every Linear's weight on this batch (no parameter or optimizer state changes)."""
        return _norms(F.cross_entropy(self.model(x), y), self.weights)

    def penalty(self) -> float | None:
        """The weight μ of the hidden terms in the probed objective now (decoupled only)."""
        return None

    def probe(self) -> dict[str, Any]:
        return grad_ratio(self.norms(*self.probe_batch), self.penalty())

    def after_first_step(self) -> None:
        self.entry["grad_norms"]["first_step"] = self.probe()

    def epoch_extras(self) -> dict[str, Any]:
        """Recorded with every epoch (decoupled: the feasibility gap and μ)."""
        return {}

    def end_epoch(self, epoch: int, objective: float) -> dict[str, Any]:
        d = self.r.data
        loss, acc = evaluate(self.model, d.train_x[: self.ev], d.train_y[: self.ev])
        _, test_acc = evaluate(self.model, d.test_x, d.test_y)
        g = self.probe()  # every epoch end: "stays within" is measured
        record = {
            "objective": objective,
            "train_loss": loss,
            "train_acc": acc,
            "test_acc": test_acc,
            "grad_ratio": g["ratio"],
            "grad_zero_layers": g["zero_layers"],
            **self.epoch_extras(),
        }
        for point, at in (("epoch_1", 1), ("end", self.r.cfg.epochs)):
            if epoch == at:
                self.entry["grad_norms"][point] = g
        return record

    def complete(self) -> None:
        if self.r.on_model is not None:
            self.r.on_model(self.model)

    def diverged(self, exc: Exception, epoch: int, step: int) -> dict[str, Any] | None:
        # a non-finite loss or value: recorded, and the benchmark goes on with the next run
        nonfinite = isinstance(exc, FloatingPointError) or any(w in str(exc) for w in ("nan", "NaN", "inf"))
        return {"error": f"{type(exc).__name__}: {exc}"} if nonfinite else None

    def extras(self) -> dict[str, Any]:
        """Facts recorded once per run (decoupled: the z store's bytes)."""
        return {}


class LocoPropRunner(Runner):
    """LocoProp-M with its preconditioned solver on the same MLP (the closure returns the loss)."""

    def __init__(self, model: nn.Sequential, r: DepthRun) -> None:
        c = r.cfg
        self.locoprop = LocoProp(
            model,
            lr=c.locoprop_lr,
            variant="m",
            solver="precond",
            steps=c.locoprop_steps,
            gamma=c.locoprop_gamma,
            damping=c.locoprop_damping,
            process_group=None,
        )
        super().__init__(model, r, self.locoprop)

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        return float(self.locoprop.step(lambda: F.cross_entropy(self.model(x), y)))


class DeepSupervisionRunner(Runner):
    """A head on every ``ds_every``-th hidden layer, equal fixed weights, :func:`layerwise.backward`, SGD."""

    def __init__(self, model: nn.Sequential, r: DepthRun) -> None:
        torch.manual_seed(10_000 + r.cfg.seed)
        layers = list(range(r.cfg.ds_every, r.depth, r.cfg.ds_every))  # hidden layers (1-based) with a head
        self.heads = nn.ModuleDict({f"aux{i}": LocalClassifier(r.cfg.width, r.data.num_classes) for i in layers})
        p = next(model.parameters())
        self.heads.to(device=p.device, dtype=p.dtype)
        self.taps = Taps(model, {f"aux{i}": str(2 * i - 1) for i in layers}) if layers else None
        self.weighting = Fixed.equal(["main", *self.heads.keys()])
        self.params = [*model.parameters(), *self.heads.parameters()]
        super().__init__(model, r, r.sgd(self.params))

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        losses = supervised_losses(self.model, self.taps, self.heads, x, y)
        backward(losses, self.weighting, params=self.params)
        self.optimizer.step()
        return float(sum(v.detach() for v in losses.values()))

    def norms(self, x: Tensor, y: Tensor, idx: Tensor) -> list[float]:
        losses = supervised_losses(self.model, self.taps, self.heads, x, y)
        return _norms(sum(losses.values(), torch.zeros(())), self.weights)  # Fixed.equal: weights 1

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


class DecoupledRunner(Runner):
    """:class:`~layerwise.decoupled.DecoupledTrainer` on the model's blocks: z in an fp32 in-memory store
    (``forward=False``), or z from a forward pass at every step (``forward=True``, no store)."""

    def __init__(self, model: nn.Sequential, r: DepthRun, forward: bool = False) -> None:
        super().__init__(model, r, None)
        c, self.forward = r.cfg, forward
        store = None if forward else ZStore(len(r.data.train_x), [(c.width,)] * r.depth, dtype=torch.float32)
        source = StoredZ(store) if store is not None else ForwardDeltaZ() if c.delta else ForwardZ()
        self.trainer = DecoupledTrainer(
            blocks_of(model),
            source,
            loss_h="mse",
            mu=geometric(c.mu_start, c.mu_factor, math.ceil(len(r.data.train_x) / c.batch_size)),
            optimizer=lambda ps: torch.optim.Adam(ps, lr=c.decoupled_lr, fused=True),
            z_lr=c.z_lr,
            z_steps=c.forward_z_steps if forward else c.z_steps,
            mode="z-first" if forward else c.decoupled_mode,
            z_order="sweep" if forward else c.z_order,
            activation_slopes=c.activation_slopes,
            process_group=None,
        )

    def start(self) -> None:
        if not self.forward:
            self.trainer.initialize(self.batches())

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        return sum(self.trainer.step((x, y, idx)).values())

    def norms(self, x: Tensor, y: Tensor, idx: Tensor) -> list[float]:
        # what the θ-step would apply now: block t's own term depends on W_t only through f_t
        return _norms(self.trainer.theta_objective((x, y, idx)), self.weights)

    def penalty(self) -> float | None:
        return self.trainer.mu

    def epoch_extras(self) -> dict[str, Any]:
        if self.forward:
            return {"mu": self.trainer.mu}
        gap = self.trainer.feasibility_gap(self.eval_batches)
        return {"feasibility_gap": [gap[t] for t in sorted(gap)], "mu": self.trainer.mu}

    def finish(self) -> dict[str, Any]:
        if self.r.cfg.consistency_epochs < 1:
            return {}
        return {"consistency_loss": self.trainer.consistency_step(self.batches(), epochs=self.r.cfg.consistency_epochs)}

    def extras(self) -> dict[str, Any]:
        return {"z_bytes": 0 if self.trainer.store is None else self.trainer.store.nbytes()}


@dataclass(frozen=True)
class DepthMethod(Entry[Callable[[nn.Sequential, DepthRun], Runner]]):
    """A depth-benchmark method: its initialisation (``{field}``s filled from the config) and its runner."""

    init: str = "default"


def _backprop(name: str, summary: str, optimizer: str = "adam", init: str = "default") -> DepthMethod:
    return DepthMethod(name, summary, lambda m, r: Runner(m, r, getattr(r, optimizer)(list(m.parameters()))), init=init)


#: the methods, each with its initialisation and its runner (the report lists their summaries).
DEPTH_METHODS: dict[str, DepthMethod] = table(
    _backprop("bp-default-sgd", "backprop, PyTorch default init, SGD momentum {momentum} lr {sgd_lr:g}", "sgd"),
    _backprop("bp-glorot-adam", "backprop, xavier_uniform init (zero biases), Adam lr {adam_lr:g}", init="glorot"),
    _backprop(
        "bp-orthogonal-adam",
        "backprop, orthogonal init with calculate_gain(activation) (zero biases), Adam lr {adam_lr:g}",
        init="orthogonal",
    ),
    _backprop(
        "bp-critical-adam",
        "backprop, critical init (orthogonal / f'(0), input-centring biases after sigmoid layers), Adam lr {adam_lr:g}",
        init="critical",
    ),
    DepthMethod(
        "decoupled",
        "DecoupledTrainer (MAC: z stored per example), {decoupled_init} init, {decoupled_mode} mode, {z_order} "
        "z-steps, per-block Adam lr {decoupled_lr:g}, z_lr {z_lr:g}, z_steps {z_steps}, mu = {mu_start:g} x "
        "{mu_factor:g} per epoch, squared-error L_h, fp32 z store in memory, {consistency_epochs} consistency "
        "epoch(s) at the end, activation slopes in the curvature bound: {activation_slopes}",
        DecoupledRunner,
        init="{decoupled_init}",
    ),
    DepthMethod(
        "decoupled-forward",
        "DecoupledTrainer with z from a forward pass at every step (online alternating minimisation, no "
        "store), {decoupled_init} init, z-first mode, sweep z-steps, per-block Adam lr {decoupled_lr:g}, z_lr "
        "{z_lr:g}, z_steps {forward_z_steps}, mu = {mu_start:g} x {mu_factor:g} per epoch, squared-error L_h, "
        "{consistency_epochs} consistency epoch(s) at the end, activation slopes in the curvature bound: "
        "{activation_slopes}, delta form: {delta}",
        functools.partial(DecoupledRunner, forward=True),
        init="{decoupled_init}",
    ),
    DepthMethod(
        "locoprop",
        "LocoProp-M, {locoprop_init} init, solver precond, steps {locoprop_steps}, gamma {locoprop_gamma:g}, "
        "damping {locoprop_damping:g}, lr {locoprop_lr:g}",
        LocoPropRunner,
        init="{locoprop_init}",
    ),
    DepthMethod(
        "deep-supervision",
        "deep supervision: a LocalClassifier head after every {ds_every} hidden layers, Fixed.equal weights, "
        "layerwise.backward; default init, SGD momentum {momentum} lr {sgd_lr:g} (as bp-default-sgd)",
        DeepSupervisionRunner,
    ),
)


def make_runner(
    method: str,
    activation: str,
    depth: int,
    cfg: Any,
    data: MLPData,
    on_model: Callable[[nn.Module], None] | None = None,
) -> Runner:
    """The runner of ``method`` with its entry; the model's initial weights depend on ``cfg.seed`` and the init only."""
    if method not in DEPTH_METHODS:
        raise ValueError(f"Invalid method {method!r}. Expected one of {list(DEPTH_METHODS)}.")
    entry, x = DEPTH_METHODS[method], data.train_x
    torch.manual_seed(cfg.seed)
    model = build_mlp(x.shape[1], data.num_classes, depth, cfg.width, activation, entry.init.format(**vars(cfg)))  # type: ignore[arg-type]
    model.to(device=x.device, dtype=getattr(torch, cfg.dtype))
    runner = entry.make(model, DepthRun(depth, cfg, data, on_model))
    runner.entry = {
        "method": method,
        "activation": activation,
        "depth": depth,
        "status": "running",
        "records": [],
        "grad_norms": {},
        "linear_layers": depth + 1,
        **runner.extras(),
    }
    return runner
