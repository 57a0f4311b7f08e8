"""The methods of ``layerwise bench depth``, each a small runner over the public API around the same plain MLP.

A runner trains its model one batch ``(x, y, idx)`` at a time (:meth:`Runner.step`) and measures the
per-layer gradient norms ``‖∂L/∂W_t‖`` of the weights of every ``nn.Linear`` on a fixed probe batch,
without touching the optimizer (:meth:`Runner.probe`). ``L`` is the objective the method itself
descends: the global loss for backprop and LocoProp, the equally weighted sum of the main and head
losses for deep supervision, and for decoupled training each block's OWN term of eq. (3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerwise import backward
from layerwise.decoupled import DecoupledTrainer, ZStore, geometric
from layerwise.locoprop import LocoProp
from layerwise.losses import LocalClassifier
from layerwise.taps import Taps
from layerwise.weighting import Fixed

from ..core._entry import Entry, table
from ._depth_model import blocks_of, build_mlp, linear_layers

__all__ = ["DEPTH_METHODS", "DepthMethod", "DepthRun", "Runner", "make_runner"]

Batch = tuple[Tensor, Tensor, Tensor]


def _norms(loss: Tensor, weights: Sequence[Tensor]) -> list[float]:
    grads = torch.autograd.grad(loss, list(weights), allow_unused=True)
    return [0.0 if g is None else float(g.norm()) for g in grads]


class Runner:
    """Backprop with one optimizer on the global loss (also the base of the other runners)."""

    def __init__(self, model: nn.Sequential, optimizer: torch.optim.Optimizer | None) -> None:
        self.model, self.optimizer = model, optimizer
        self.weights = [lin.weight for lin in linear_layers(model)]

    def start(self, batches: Callable[[], list[Batch]]) -> None:
        """Work done once before the first step (timed as training)."""

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        """One update; returns the value of the objective the method descends on this batch."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def probe(self, x: Tensor, y: Tensor, idx: Tensor) -> list[float]:
        """``‖∂L/∂W_t‖`` of every Linear's weight on this batch (no parameter or optimizer state changes)."""
        return _norms(F.cross_entropy(self.model(x), y), self.weights)

    def epoch_end(self, batches: list[Batch]) -> dict[str, Any]:
        """Per-epoch extras recorded with the epoch (decoupled: the feasibility gap)."""
        return {}

    def penalty(self) -> float | None:
        """The weight μ of the hidden terms in the probed objective now (decoupled only)."""
        return None

    def finish(self, batches: Callable[[], list[Batch]]) -> dict[str, Any]:
        """Work after the last epoch (timed as training); returns what to record about it."""
        return {}

    def extras(self) -> dict[str, Any]:
        """Facts recorded once per run (decoupled: the z store's bytes)."""
        return {}

    def close(self) -> None:
        """Release hooks."""


class LocoPropRunner(Runner):
    """LocoProp-M with its preconditioned solver on the same MLP (the closure returns the loss)."""

    def __init__(self, model: nn.Sequential, optimizer: LocoProp) -> None:
        super().__init__(model, optimizer)
        self.locoprop = optimizer

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        return float(self.locoprop.step(lambda: F.cross_entropy(self.model(x), y)))


class DeepSupervisionRunner(Runner):
    """Heads on every ``every``-th hidden layer, equal fixed weights, :func:`layerwise.backward`."""

    def __init__(
        self,
        model: nn.Sequential,
        depth: int,
        width: int,
        num_classes: int,
        every: int,
        make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    ) -> None:
        layers = list(range(every, depth, every))  # hidden layers (1-based) that get a head; the output is main
        self.heads = nn.ModuleDict({f"aux{i}": LocalClassifier(width, num_classes) for i in layers})
        p = next(model.parameters())
        self.heads.to(device=p.device, dtype=p.dtype)
        self.taps = Taps(model, {f"aux{i}": str(2 * i - 1) for i in layers}) if layers else None
        self.weighting = Fixed.equal(["main", *self.heads.keys()])
        self.params = [*model.parameters(), *self.heads.parameters()]
        super().__init__(model, make_optimizer(self.params))

    def _losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        out = {"main": F.cross_entropy(self.model(x), y)}
        if self.taps is not None:
            out.update({k: head(self.taps[k], y) for k, head in self.heads.items()})
        return out

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        losses = self._losses(x, y)
        backward(losses, self.weighting, params=self.params)
        self.optimizer.step()
        return float(sum(v.detach() for v in losses.values()))

    def probe(self, x: Tensor, y: Tensor, idx: Tensor) -> list[float]:
        return _norms(sum(self._losses(x, y).values(), torch.zeros(())), self.weights)  # Fixed.equal: weights 1

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


class DecoupledRunner(Runner):
    """:class:`~layerwise.decoupled.DecoupledTrainer` on the model's blocks: z in an fp32 in-memory store
    (``forward=False``), or z from a forward pass at every step (``forward=True``, no store)."""

    def __init__(
        self,
        model: nn.Sequential,
        n: int,
        depth: int,
        width: int,
        cfg: Any,
        steps_per_epoch: int,
        forward: bool = False,
    ) -> None:
        super().__init__(model, None)
        self.depth, self.forward = depth, forward
        store = None if forward else ZStore(n, [(width,)] * depth, dtype=torch.float32)
        lr = cfg.decoupled_lr
        self.trainer = DecoupledTrainer(
            blocks_of(model),
            store,
            loss_h="mse",
            mu=geometric(cfg.mu_start, cfg.mu_factor, steps_per_epoch),
            optimizer=lambda ps: torch.optim.Adam(ps, lr=lr, fused=True),
            z_lr=cfg.z_lr,
            z_steps=cfg.forward_z_steps if forward else cfg.z_steps,
            mode="z-first" if forward else cfg.decoupled_mode,
            z_init="forward" if forward else "stored",
            z_order="sweep" if forward else cfg.z_order,
            delta=cfg.delta and forward,
            activation_slopes=cfg.activation_slopes,
            process_group=None,
        )
        self.consistency_epochs = cfg.consistency_epochs

    def start(self, batches: Callable[[], list[Batch]]) -> None:
        if not self.forward:
            self.trainer.initialize(batches())

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        return sum(self.trainer.step((x, y, idx)).values())

    def probe(self, x: Tensor, y: Tensor, idx: Tensor) -> list[float]:
        # what the θ-step would apply now: block t's own term depends on W_t only through f_t
        return _norms(self.trainer.theta_objective((x, y, idx)), self.weights)

    def penalty(self) -> float | None:
        return self.trainer.mu

    def epoch_end(self, batches: list[Batch]) -> dict[str, Any]:
        if self.forward:
            return {"mu": self.trainer.mu}
        gap = self.trainer.feasibility_gap(batches)
        return {"feasibility_gap": [gap[t] for t in sorted(gap)], "mu": self.trainer.mu}

    def finish(self, batches: Callable[[], list[Batch]]) -> dict[str, Any]:
        if self.consistency_epochs < 1:
            return {}
        loss = self.trainer.consistency_step(batches(), epochs=self.consistency_epochs)
        return {"consistency_loss": loss}

    def extras(self) -> dict[str, Any]:
        return {"z_bytes": 0 if self.trainer.store is None else self.trainer.store.nbytes()}


@dataclass(frozen=True)
class DepthRun:
    """What a runner is built from besides its model: the network's shape, the data's size and the config."""

    depth: int
    width: int
    num_classes: int
    n: int
    steps_per_epoch: int
    cfg: Any

    def sgd(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.cfg.sgd_lr, momentum=self.cfg.momentum)

    def adam(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.cfg.adam_lr, fused=True)


@dataclass(frozen=True)
class DepthMethod(Entry[Callable[[nn.Sequential, DepthRun], Runner]]):
    """A depth-benchmark method: its initialisation (``{field}``s filled from the config) and its runner."""

    init: str = "default"


def _locoprop(model: nn.Sequential, r: DepthRun) -> Runner:
    c = r.cfg
    opt = LocoProp(
        model,
        lr=c.locoprop_lr,
        variant="m",
        solver="precond",
        steps=c.locoprop_steps,
        gamma=c.locoprop_gamma,
        damping=c.locoprop_damping,
        process_group=None,
    )
    return LocoPropRunner(model, opt)


def _deep_supervision(model: nn.Sequential, r: DepthRun) -> Runner:
    torch.manual_seed(10_000 + r.cfg.seed)
    return DeepSupervisionRunner(model, r.depth, r.width, r.num_classes, r.cfg.ds_every, r.sgd)


def _decoupled(forward: bool) -> Callable[[nn.Sequential, DepthRun], Runner]:
    def make(model: nn.Sequential, r: DepthRun) -> Runner:
        return DecoupledRunner(model, r.n, r.depth, r.width, r.cfg, r.steps_per_epoch, forward=forward)

    return make


def _backprop(optimizer: str) -> Callable[[nn.Sequential, DepthRun], Runner]:
    def make(model: nn.Sequential, r: DepthRun) -> Runner:
        return Runner(model, getattr(r, optimizer)(list(model.parameters())))

    return make


#: the methods, each with its initialisation and its runner (the report lists their summaries).
DEPTH_METHODS: dict[str, DepthMethod] = table(
    DepthMethod(
        "bp-default-sgd",
        "backprop, PyTorch default init, SGD momentum {momentum} lr {sgd_lr:g}",
        _backprop("sgd"),
    ),
    DepthMethod(
        "bp-glorot-adam",
        "backprop, xavier_uniform init (zero biases), Adam lr {adam_lr:g}",
        _backprop("adam"),
        init="glorot",
    ),
    DepthMethod(
        "bp-orthogonal-adam",
        "backprop, orthogonal init with calculate_gain(activation) (zero biases), Adam lr {adam_lr:g}",
        _backprop("adam"),
        init="orthogonal",
    ),
    DepthMethod(
        "bp-critical-adam",
        "backprop, critical init (orthogonal / f'(0), input-centring biases after sigmoid layers), Adam lr {adam_lr:g}",
        _backprop("adam"),
        init="critical",
    ),
    DepthMethod(
        "decoupled",
        "DecoupledTrainer (MAC: z stored per example), {decoupled_init} init, {decoupled_mode} mode, {z_order} "
        "z-steps, per-block Adam lr {decoupled_lr:g}, z_lr {z_lr:g}, z_steps {z_steps}, mu = {mu_start:g} x "
        "{mu_factor:g} per epoch, squared-error L_h, fp32 z store in memory, {consistency_epochs} consistency "
        "epoch(s) at the end, activation slopes in the curvature bound: {activation_slopes}",
        _decoupled(forward=False),
        init="{decoupled_init}",
    ),
    DepthMethod(
        "decoupled-forward",
        "DecoupledTrainer with z from a forward pass at every step (online alternating minimisation, no "
        "store), {decoupled_init} init, z-first mode, sweep z-steps, per-block Adam lr {decoupled_lr:g}, z_lr "
        "{z_lr:g}, z_steps {forward_z_steps}, mu = {mu_start:g} x {mu_factor:g} per epoch, squared-error L_h, "
        "{consistency_epochs} consistency epoch(s) at the end, activation slopes in the curvature bound: "
        "{activation_slopes}, delta form: {delta}",
        _decoupled(forward=True),
        init="{decoupled_init}",
    ),
    DepthMethod(
        "locoprop",
        "LocoProp-M, {locoprop_init} init, solver precond, steps {locoprop_steps}, gamma {locoprop_gamma:g}, "
        "damping {locoprop_damping:g}, lr {locoprop_lr:g}",
        _locoprop,
        init="{locoprop_init}",
    ),
    DepthMethod(
        "deep-supervision",
        "deep supervision: a LocalClassifier head after every {ds_every} hidden layers, Fixed.equal weights, "
        "layerwise.backward; default init, SGD momentum {momentum} lr {sgd_lr:g} (as bp-default-sgd)",
        _deep_supervision,
    ),
)


def make_runner(
    method: str,
    *,
    activation: str,
    depth: int,
    width: int,
    in_features: int,
    num_classes: int,
    n: int,
    steps_per_epoch: int,
    cfg: Any,
    device: torch.device,
) -> Runner:
    """The runner of ``method``; the model's initial weights depend on ``cfg.seed`` and the init only."""
    if method not in DEPTH_METHODS:
        raise ValueError(f"Invalid method {method!r}. Expected one of {list(DEPTH_METHODS)}.")
    entry = DEPTH_METHODS[method]
    torch.manual_seed(cfg.seed)
    model = build_mlp(in_features, num_classes, depth, width, activation, entry.init.format(**vars(cfg)))  # type: ignore[arg-type]
    model.to(device=device, dtype=getattr(torch, cfg.dtype))
    return entry.make(model, DepthRun(depth, width, num_classes, n, steps_per_epoch, cfg))
