"""Decoupled training of a feed-forward stack with auxiliary activations (the Method of Auxiliary Coordinates)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._data import unpack_batch
from ._store import ZStore

__all__ = ["DecoupledTrainer", "squared_error"]


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """``L_h = ½‖ẑ − z‖²`` per example, averaged over the batch."""
    return 0.5 * (pred - target).pow(2).flatten(1).sum(1).mean()


class DecoupledTrainer:
    """Train ``blocks`` (f_1 … f_T) with one stored auxiliary activation per example and hidden layer.

    The seed's eq. (3), with a penalty weight μ on the hidden terms (MAC, Carreira-Perpiñán & Wang,
    AISTATS 2014), averaged over a batch B of examples i::

        L = mean_i L_y(f_T(z_{T−1}^i), y^i) + μ Σ_{t<T} mean_i L_h(f_t(z_{t−1}^i), z_t^i),   z_0 = x.

    Block t's parameters θ_t only see (z_{t−1}, z_t): no gradient crosses more than one block, so
    depth cannot make it vanish, and blocks can be trained in parallel (each has its own optimizer).
    The z of the batch's rows take ``z_steps`` gradient steps on each example's own objective, of
    size ``z_lr/μ`` (stable as μ grows), with no optimizer state.

    Args:
        blocks: the T blocks of the plain network, input to output (e.g. ``Linear+Tanh`` … ``Linear``).
        store: a :class:`ZStore` with the shapes of the T−1 hidden activations.
        loss_y: output loss, mean over the batch (default cross-entropy).
        loss_h: hidden loss, ``"mse"`` (:func:`squared_error`) or a callable ``(ẑ, z) -> scalar``.
        mu: the penalty μ, or a schedule ``k -> μ`` of the step count (see :func:`geometric`).
        optimizer: builds each block's optimizer from its parameters (default Adam, lr 1e-3).
        z_lr: z step size (per example, divided by μ). z_steps: z steps per batch.
        mode: ``"joint"`` (θ and z from one backward) or ``"alternating"`` (θ-step, then z-steps with
            the updated θ, as in MAC).
    """

    def __init__(self, blocks: Sequence[nn.Module], store: ZStore, *,
                 loss_y: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                 loss_h: Literal["mse"] | Callable[[Tensor, Tensor], Tensor] = "mse",
                 mu: float | Callable[[int], float] = 1.0,
                 optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                 z_lr: float = 0.5, z_steps: int = 1, mode: Literal["joint", "alternating"] = "joint") -> None:
        blocks = list(blocks)
        if len(blocks) < 2:
            raise ValueError(f"Invalid blocks: decoupling needs at least 2 blocks, found {len(blocks)}.")
        if store.depth != len(blocks) - 1:
            raise ValueError(f"Invalid store: {len(blocks)} blocks have {len(blocks) - 1} hidden activations, but the "
                             f"store holds {store.depth}. Build ZStore(n, shapes) with one shape per hidden layer.")
        if mode not in ("joint", "alternating"):
            raise ValueError(f"Invalid mode={mode!r}. Expected 'joint' or 'alternating'.")
        if not z_lr >= 0 or z_steps < 1:
            raise ValueError(f"Invalid z_lr={z_lr} or z_steps={z_steps}: expected z_lr >= 0 and z_steps >= 1.")
        if isinstance(mu, (int, float)):
            if not mu > 0:
                raise ValueError(f"Invalid mu={mu}: expected > 0.")
            value = float(mu)
            mu = lambda k: value  # noqa: E731
        self.blocks = nn.ModuleList(blocks)
        self.store, self.loss_y, self.mu_schedule = store, loss_y, mu
        self.loss_h = squared_error if loss_h == "mse" else loss_h
        if not callable(self.loss_h):
            raise ValueError(f"Invalid loss_h={loss_h!r}: expected 'mse' or a callable (prediction, target).")
        make = optimizer or (lambda ps: torch.optim.Adam(ps, lr=1e-3))
        self.optimizers = [make(b.parameters()) for b in self.blocks]
        self.z_lr, self.z_steps, self.mode = z_lr, z_steps, mode
        self.steps = 0
        self.fingerprint: Tensor | None = None
        self.gap_history: list[list[float]] = []

    @property
    def mu(self) -> float:
        """μ at the current step."""
        return float(self.mu_schedule(self.steps))

    def forward(self, x: Tensor) -> Tensor:
        """The PLAIN network: f_T(…f_1(x)), what you evaluate and deploy."""
        for block in self.blocks:
            x = block(x)
        return x

    __call__ = forward

    @torch.no_grad()
    def initialize(self, loader: Iterable[Any]) -> None:
        """z_t = f_t(…f_1(x)) for every example: a forward pass, so every hidden term starts at 0."""
        n = len(getattr(loader, "dataset", ())) if hasattr(loader, "dataset") else None
        if n is not None and n != self.store.n:
            raise ValueError(f"Invalid loader: its dataset has {n} examples but the store was built for "
                             f"{self.store.n}. Build ZStore(n={n}, ...).")
        fingerprint = torch.full((self.store.n,), float("nan"), dtype=torch.float64)
        for batch in loader:
            x, _, idx = unpack_batch(batch)
            fingerprint[idx] = x.detach().flatten(1).double().sum(1).cpu()
            h = x
            for t, block in enumerate(self.blocks[:-1]):
                h = block(h)
                self.store.write(t, idx, h)
        self.fingerprint = fingerprint

    def _check_inputs(self, x: Tensor, idx: Tensor) -> None:
        if self.fingerprint is None:
            raise RuntimeError("The z store is not initialised: call trainer.initialize(loader) before training.")
        now = x.detach().flatten(1).double().sum(1).cpu()
        before = self.fingerprint[idx.cpu()]
        if torch.isnan(before).any():
            i = int(idx[torch.isnan(before).nonzero()[0, 0]])
            raise ValueError(f"Example {i} was not in the loader given to initialize(): its z was never set. "
                             "Initialise with a loader over the whole training set.")
        bad = ~torch.isclose(now, before, rtol=1e-4, atol=1e-4)
        if bad.any():
            i = int(idx[bad.nonzero()[0, 0]])
            raise ValueError(f"The input of example {i} differs from the one z was initialised with: random data "
                             "augmentation (or a shuffled dataset without stable indices) breaks the stored "
                             "activations. Turn augmentation off for decoupled training, or re-initialise.")

    def losses(self, x: Tensor, y: Tensor, zs: Sequence[Tensor]) -> dict[str, Tensor]:
        """Eq. (3) for a batch: ``{"hidden{t}": μ·L_h(f_t(z_{t−1}), z_t), ..., "output": L_y(f_T(z_{T−1}), y)}``."""
        inputs = [x, *zs]
        mu = self.mu
        out = {f"hidden{t + 1}": mu * self.loss_h(block(inputs[t]), zs[t])
               for t, block in enumerate(self.blocks[:-1])}
        out["output"] = self.loss_y(self.blocks[-1](inputs[-1]), y)
        return out

    def _z_step(self, x: Tensor, y: Tensor, zs: list[Tensor], grads: Sequence[Tensor | None]) -> list[Tensor]:
        scale = self.z_lr * len(x) / self.mu  # per-example gradient (mean over the batch) of size z_lr/μ
        return [(z - scale * g).detach() if g is not None else z.detach() for z, g in zip(zs, grads, strict=True)]

    def step(self, batch: Any) -> dict[str, float]:
        """One decoupled step on a batch ``(x, y, idx)``; returns the terms of eq. (3)."""
        x, y, idx = unpack_batch(batch)
        self._check_inputs(x, idx)
        zs = [self.store.rows(t, idx, x.dtype).to(x.device).requires_grad_(True) for t in range(self.store.depth)]
        terms = self.losses(x, y, zs)
        for name, v in terms.items():
            if not math.isfinite(float(v.detach())):
                raise ValueError(f"The {name} term is {float(v.detach())}: nothing was updated. Lower the learning "
                                 "rates or the penalty mu.")
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        total = sum(terms.values(), torch.zeros((), device=x.device))
        if self.mode == "joint":
            z_grads = torch.autograd.grad(total, zs, retain_graph=True, allow_unused=True)
            total.backward(inputs=[p for b in self.blocks for p in b.parameters()])
            new = self._z_step(x, y, zs, z_grads)
            for opt in self.optimizers:
                opt.step()
        else:
            total.backward(inputs=[p for b in self.blocks for p in b.parameters()])
            for opt in self.optimizers:
                opt.step()
            new = [z.detach() for z in zs]
            for _ in range(self.z_steps):
                zs_req = [z.requires_grad_(True) for z in new]
                t2 = sum(self.losses(x, y, zs_req).values(), torch.zeros((), device=x.device))
                new = self._z_step(x, y, zs_req, torch.autograd.grad(t2, zs_req, allow_unused=True))
        if self.mode == "joint" and self.z_steps > 1:
            for _ in range(self.z_steps - 1):
                zs_req = [z.requires_grad_(True) for z in new]
                t2 = sum(self.losses(x, y, zs_req).values(), torch.zeros((), device=x.device))
                new = self._z_step(x, y, zs_req, torch.autograd.grad(t2, zs_req, allow_unused=True))
        for t, z in enumerate(new):
            self.store.write(t, idx, z)
        self.steps += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def feasibility_gap(self, loader: Iterable[Any]) -> list[float]:
        """Per hidden layer, the root-mean-square ``‖z_t − f_t(z_{t−1})‖`` over the examples of ``loader``;
        appended to :attr:`gap_history`."""
        sums = [0.0] * self.store.depth
        count = 0
        for batch in loader:
            x, _, idx = unpack_batch(batch)
            inputs = [x, *[self.store.rows(t, idx, x.dtype).to(x.device) for t in range(self.store.depth)]]
            for t in range(self.store.depth):
                sums[t] += float((self.blocks[t](inputs[t]) - inputs[t + 1]).pow(2).flatten(1).sum(1).sum())
            count += len(x)
        gap = [math.sqrt(s / max(count, 1)) for s in sums]
        self.gap_history.append(gap)
        return gap

    def consistency_step(self, loader: Iterable[Any], epochs: int = 1) -> float:
        """Refit the LAST block on the true forward activations of the plain network (the z are dropped
        at test time, so the output layer must match what the plain net feeds it). Returns the mean
        output loss of the last epoch."""
        opt = self.optimizers[-1]
        mean = float("nan")
        for _ in range(epochs):
            total, count = 0.0, 0
            for batch in loader:
                x, y, _ = unpack_batch(batch)
                with torch.no_grad():
                    h = x
                    for block in self.blocks[:-1]:
                        h = block(h)
                loss = self.loss_y(self.blocks[-1](h), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(x)
                count += len(x)
            mean = total / max(count, 1)
        return mean
