"""Decoupled training of a feed-forward stack with auxiliary activations (the Method of Auxiliary Coordinates)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..locoprop._distributed import broadcast_module, resolve_group
from ._data import unpack_batch
from ._stages import Boundary, split_blocks, stage_of
from ._store import ZStore

__all__ = ["DecoupledTrainer", "squared_error"]


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """``L_h = ½‖ẑ − z‖²`` per example, averaged over the batch."""
    return 0.5 * (pred - target).pow(2).flatten(1).sum(1).mean()


class DecoupledTrainer:
    """Train ``blocks`` (f_0 … f_{T−1}) with one stored auxiliary activation per example and hidden layer.

    The seed's eq. (3), with a penalty weight μ on the hidden terms (MAC, Carreira-Perpiñán & Wang,
    AISTATS 2014), averaged over a batch of examples i, with z_{−1} = x::

        L = mean_i L_y(f_{T−1}(z_{T−2}^i), y^i) + μ Σ_{t<T−1} mean_i L_h(f_t(z_{t−1}^i), z_t^i).

    Block t's parameters only see (z_{t−1}, z_t): no gradient crosses more than one block, so depth
    cannot make it vanish, and blocks train independently (each has its own optimizer). The z of
    the batch's rows take ``z_steps`` gradient steps on each example's own objective, of size
    ``z_lr/(1 + μ)`` (stable as μ grows), with no optimizer state.

    **Layer parallelism.** When ``torch.distributed`` is initialised (``process_group="auto"``),
    the blocks are split into contiguous stages, one per process (``starts`` gives the first block
    of each stage; default: balanced parameter counts). A process trains only its blocks and keeps
    only its z; neighbouring stages share the boundary z_j and all-reduce their parts of ∂L/∂z_j
    (batch × width values per boundary per z step). Parameters never travel during training; call
    :meth:`gather` to give every process the whole network. Every process must see the same batches.

    Args:
        blocks: the T blocks of the plain network, input to output (e.g. ``Linear+Tanh`` … ``Linear``).
        store: a :class:`ZStore` with the shapes of the T−1 hidden activations (in a stage, only the
            layers :attr:`z_layers` need to be allocated: ``ZStore(..., layers=trainer_layers)``).
        loss_y: output loss, mean over the batch (default cross-entropy).
        loss_h: hidden loss, ``"mse"`` (:func:`squared_error`) or a callable ``(ẑ, z) -> scalar``.
        mu: the penalty μ, or a schedule ``k -> μ`` of the step count (see :func:`geometric`).
        optimizer: builds each block's optimizer from its parameters (default Adam, lr 1e-3).
        z_lr: z step size (per example, divided by 1 + μ). z_steps: z steps per batch.
        mode: ``"joint"`` (θ and z from one backward) or ``"alternating"`` (θ-step, then z-steps with
            the updated θ, as in MAC).
        process_group: ``"auto"``, ``None`` (no layer parallelism) or a group.
        starts: first block of each stage (layer parallelism only).
    """

    def __init__(self, blocks: Sequence[nn.Module], store: ZStore, *,
                 loss_y: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                 loss_h: Literal["mse"] | Callable[[Tensor, Tensor], Tensor] = "mse",
                 mu: float | Callable[[int], float] = 1.0,
                 optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                 z_lr: float = 0.5, z_steps: int = 1, mode: Literal["joint", "alternating"] = "joint",
                 process_group: Any = "auto", starts: Sequence[int] | None = None) -> None:
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
        self.loss_h = squared_error if loss_h == "mse" else loss_h
        if not callable(self.loss_h):
            raise ValueError(f"Invalid loss_h={loss_h!r}: expected 'mse' or a callable (prediction, target).")
        self.blocks = nn.ModuleList(blocks)
        self.store, self.loss_y, self.mu_schedule = store, loss_y, mu
        self.z_lr, self.z_steps, self.mode = z_lr, z_steps, mode
        self.T = len(blocks)
        self.group = resolve_group(process_group)
        self.rank = dist.get_rank(self.group) if self.group is not None else 0
        world = dist.get_world_size(self.group) if self.group is not None else 1
        self.starts = list(starts) if starts is not None else split_blocks(blocks, world)
        if len(self.starts) != world or self.starts[0] != 0 or sorted(set(self.starts)) != self.starts \
                or self.starts[-1] >= self.T:
            raise ValueError(f"Invalid starts={self.starts}: expected {world} increasing block indices from 0, below "
                             f"{self.T}.")
        self.stage = stage_of(self.starts, self.T, self.rank)
        a, b = self.stage.start, self.stage.stop
        self.z_layers = [j for j in range(self.T - 1) if a - 1 <= j <= b - 1]
        self.boundaries: list[Boundary] = []
        if self.group is not None:
            broadcast_module(self.blocks, self.group)  # every stage starts from rank 0's network
            for r in range(world - 1):  # every process creates every subgroup, in the same order
                ranks = (r, r + 1)
                global_ranks = [dist.get_global_rank(self.group, q) for q in ranks] \
                    if self.group is not dist.group.WORLD else list(ranks)
                sub = dist.new_group(global_ranks)
                if self.rank in ranks:
                    self.boundaries.append(Boundary(self.starts[r + 1] - 1, ranks, sub))
        make = optimizer or (lambda ps: torch.optim.Adam(ps, lr=1e-3))
        self.optimizers = {t: make(self.blocks[t].parameters()) for t in self.stage}
        self.steps = 0
        self.fingerprint: Tensor | None = None
        self.gap_history: list[list[float]] = []

    @property
    def mu(self) -> float:
        """μ at the current step."""
        return float(self.mu_schedule(self.steps))

    def forward(self, x: Tensor) -> Tensor:
        """The PLAIN network f_{T−1}(…f_0(x)): what you evaluate and deploy (after :meth:`gather` when staged)."""
        for block in self.blocks:
            x = block(x)
        return x

    __call__ = forward

    @torch.no_grad()
    def initialize(self, loader: Iterable[Any]) -> None:
        """z_t = f_t(…f_0(x)) for every example: a forward pass, so every hidden term starts at 0."""
        n = len(getattr(loader, "dataset", ())) if hasattr(loader, "dataset") else None
        if n is not None and n != self.store.n:
            raise ValueError(f"Invalid loader: its dataset has {n} examples but the store was built for "
                             f"{self.store.n}. Build ZStore(n={n}, ...).")
        fingerprint = torch.full((self.store.n,), float("nan"), dtype=torch.float64)
        last = max(self.z_layers) if self.z_layers else -1
        for batch in loader:
            x, _, idx = unpack_batch(batch)
            fingerprint[idx] = x.detach().flatten(1).double().sum(1).cpu()
            h = x
            for t in range(last + 1):
                h = self.blocks[t](h)
                if t in self.z_layers:
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

    def losses(self, x: Tensor, y: Tensor, zs: Sequence[Tensor] | dict[int, Tensor]) -> dict[str, Tensor]:
        """Eq. (3) for a batch, for this process's blocks: ``{"hidden{t+1}": μ·L_h(f_t(z_{t−1}), z_t), …,
        "output": L_y(f_{T−1}(z_{T−2}), y)}``. ``zs[j]`` is z_j (a list of all, or a dict of :attr:`z_layers`)."""
        z = dict(enumerate(zs)) if not isinstance(zs, dict) else zs
        mu = self.mu
        out: dict[str, Tensor] = {}
        for t in self.stage:
            inp = x if t == 0 else z[t - 1]
            if t < self.T - 1:
                out[f"hidden{t + 1}"] = mu * self.loss_h(self.blocks[t](inp), z[t])
            else:
                out["output"] = self.loss_y(self.blocks[t](inp), y)
        return out

    def _z_gradients(self, total: Tensor, zs: dict[int, Tensor], idx: Tensor, retain: bool) -> dict[int, Tensor]:
        layers = list(zs)
        gs = torch.autograd.grad(total, [zs[j] for j in layers], retain_graph=retain, allow_unused=True)
        grads = {j: torch.zeros_like(zs[j]) if g is None else g for j, g in zip(layers, gs, strict=True)}
        for boundary in self.boundaries:
            grads[boundary.layer] = boundary.exchange(grads[boundary.layer], idx, self.steps)
        return grads

    def _z_step(self, zs: dict[int, Tensor], grads: dict[int, Tensor], batch: int) -> dict[int, Tensor]:
        scale = self.z_lr * batch / (1.0 + self.mu)  # the per-example gradient (of a batch mean) times z_lr/(1+μ)
        return {j: (z - scale * grads[j]).detach() for j, z in zs.items()}

    def _fresh_z_step(self, x: Tensor, y: Tensor, z: dict[int, Tensor], idx: Tensor) -> dict[int, Tensor]:
        zs = {j: v.requires_grad_(True) for j, v in z.items()}
        total = sum(self.losses(x, y, zs).values(), torch.zeros((), device=x.device))
        return self._z_step(zs, self._z_gradients(total, zs, idx, retain=False), len(x))

    def step(self, batch: Any) -> dict[str, float]:
        """One decoupled step on a batch ``(x, y, idx)``; returns this process's terms of eq. (3)."""
        x, y, idx = unpack_batch(batch)
        self._check_inputs(x, idx)
        zs = {j: self.store.rows(j, idx, x.dtype).to(x.device).requires_grad_(True) for j in self.z_layers}
        terms = self.losses(x, y, zs)
        for name, v in terms.items():
            if not math.isfinite(float(v.detach())):
                raise ValueError(f"The {name} term is {float(v.detach())}: nothing was updated. Lower the learning "
                                 "rates or the penalty mu.")
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total = sum(terms.values(), torch.zeros((), device=x.device))
        params = [p for t in self.stage for p in self.blocks[t].parameters()]
        if self.mode == "joint":
            new = self._z_step(zs, self._z_gradients(total, zs, idx, retain=True), len(x))
            total.backward(inputs=params)
            for opt in self.optimizers.values():
                opt.step()
            for _ in range(self.z_steps - 1):
                new = self._fresh_z_step(x, y, new, idx)
        else:
            total.backward(inputs=params)
            for opt in self.optimizers.values():
                opt.step()
            new = {j: z.detach() for j, z in zs.items()}
            for _ in range(self.z_steps):
                new = self._fresh_z_step(x, y, new, idx)
        for j, z in new.items():
            self.store.write(j, idx, z)
        self.steps += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def feasibility_gap(self, loader: Iterable[Any]) -> dict[int, float]:
        """Per hidden layer j of this process, the root-mean-square ``‖z_j − f_j(z_{j−1})‖`` over the
        examples of ``loader``; appended to :attr:`gap_history` (as a list in layer order)."""
        mine = [t for t in self.stage if t < self.T - 1]
        sums = dict.fromkeys(mine, 0.0)
        count = 0
        for batch in loader:
            x, _, idx = unpack_batch(batch)
            z = {j: self.store.rows(j, idx, x.dtype).to(x.device) for j in self.z_layers}
            for t in mine:
                inp = x if t == 0 else z[t - 1]
                sums[t] += float((self.blocks[t](inp) - z[t]).pow(2).flatten(1).sum(1).sum())
            count += len(x)
        gap = {t: math.sqrt(s / max(count, 1)) for t, s in sums.items()}
        self.gap_history.append([gap[t] for t in mine])
        return gap

    def gather(self) -> None:
        """Give every process the whole trained network (each block broadcast from the stage that owns it)."""
        if self.group is None:
            return
        with torch.no_grad():
            for t, block in enumerate(self.blocks):
                owner = max(r for r, s in enumerate(self.starts) if s <= t)
                src = dist.get_global_rank(self.group, owner) if self.group is not dist.group.WORLD else owner
                for p in [*block.parameters(), *block.buffers()]:
                    dist.broadcast(p.data, src=src, group=self.group)

    def consistency_step(self, loader: Iterable[Any], epochs: int = 1) -> float:
        """Refit the LAST block on the true forward activations of the plain network (the z are dropped
        at test time, so the output layer must match what the plain net feeds it). Single-process or
        after :meth:`gather`; returns the mean output loss of the last epoch."""
        if self.T - 1 not in self.optimizers:
            raise RuntimeError("consistency_step runs on the process that owns the last block.")
        opt = self.optimizers[self.T - 1]
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

    def state_dict(self) -> dict[str, Any]:
        """This process's state: its blocks, their optimizers, the step count, the input fingerprints
        and its z (in memory: the values; memory-mapped: flushed to their files)."""
        self.store.flush()
        return {"blocks": {t: self.blocks[t].state_dict() for t in self.stage},
                "optimizers": {t: o.state_dict() for t, o in self.optimizers.items()},
                "steps": self.steps, "fingerprint": self.fingerprint, "gap_history": self.gap_history,
                "z": None if self.store.path is not None else {j: self.store.rows(j, torch.arange(self.store.n),
                                                                                 self.store.dtype)
                                                               for j in self.z_layers}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the same stage layout and store)."""
        if set(state["blocks"]) != set(self.stage):
            raise ValueError(f"Invalid checkpoint: it holds blocks {sorted(state['blocks'])}, this process trains "
                             f"{list(self.stage)}. Use the same number of processes and starts.")
        for t, sd in state["blocks"].items():
            self.blocks[t].load_state_dict(sd)
        for t, sd in state["optimizers"].items():
            self.optimizers[t].load_state_dict(sd)
        self.steps, self.fingerprint = state["steps"], state["fingerprint"]
        self.gap_history = list(state["gap_history"])
        if state["z"] is not None:
            for j, values in state["z"].items():
                self.store.write(j, torch.arange(self.store.n), values.float())
