"""Decoupled training of a feed-forward stack with auxiliary activations (the Method of Auxiliary Coordinates)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._distributed import resolve_group
from ._context import ZRun
from ._data import unpack_batch
from ._delta import delta_terms
from ._modes import MODES, Batch
from ._objective import Objective, squared_error
from ._sources import StoredZ, ZSource, make_source
from ._stages import Stage
from ._store import ZStore
from ._zstep import z_step

__all__ = ["DecoupledTrainer", "squared_error"]


_DEPRECATED: Any = object()  # a deprecated flag not given


def _source(z: ZSource | ZStore | None, old: dict[str, Any]) -> ZSource:
    """The z source from ``z``, or from the deprecated ``store``/``z_init``/``delta`` flags (with a warning)."""
    given = {k: v for k, v in old.items() if v is not _DEPRECATED}
    if isinstance(z, ZSource):
        if given:
            raise ValueError(
                f"Invalid {', '.join(f'{k}=' for k in given)} with z={z!r}: z says where z come from; the "
                "deprecated store=, z_init= and delta= said the same. Pass z= alone."
            )
        return z
    if isinstance(z, ZStore) and not given:
        return StoredZ(z)
    if z is not None and not isinstance(z, ZStore):
        raise TypeError(
            f"Invalid z: expected StoredZ(store), ForwardZ(), ForwardDeltaZ() or a ZStore, found {type(z).__name__}."
        )
    if not given:
        raise ValueError(
            "Invalid z=None: pass where each step's z come from: z=StoredZ(ZStore(n, shapes)) (each example's z "
            "kept between visits, MAC), z=ForwardZ() (from a forward pass at every step) or z=ForwardDeltaZ()."
        )
    if z is not None and "store" in given:
        raise ValueError("Invalid store=: the store was also passed as z. Pass z=StoredZ(store) alone.")
    store = given.get("store", z)
    z_init, delta = given.get("z_init", "stored"), given.get("delta", False)
    source = make_source(store, z_init, delta)
    warnings.warn(
        f"DecoupledTrainer({', '.join(f'{k}=' for k in given)}...) is deprecated and goes in 0.8: the z source is "
        f"one argument now, here z={source!r}.",
        DeprecationWarning,
        stacklevel=3,
    )
    return source


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, lr 1e-3; the fused kernel on CPU and CUDA (one pass over memory: about 8× faster on a CPU)."""
    ps = list(params)
    fused = bool(ps) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in ps)
    return torch.optim.Adam(ps, lr=1e-3, fused=fused or None)


class DecoupledTrainer:
    """Train ``blocks`` (f_0 … f_{T−1}) with one stored auxiliary activation per example and hidden layer.

    The seed's eq. (3), with a penalty weight μ on the hidden terms (MAC, Carreira-Perpiñán & Wang,
    AISTATS 2014), averaged over a batch of examples i, with z_{−1} = x::

        L = mean_i L_y(f_{T−1}(z_{T−2}^i), y^i) + μ Σ_{t<T−1} mean_i L_h(f_t(z_{t−1}^i), z_t^i).

    Block t's parameters only see (z_{t−1}, z_t): no gradient crosses more than one block, so depth
    cannot make it vanish, and blocks train independently (each has its own optimizer). The z of
    the batch's rows take ``z_steps`` gradient steps on each example's own objective, with no optimizer
    state, of size ``z_lr / L_j`` where L_j bounds that objective's curvature in z_j: ``μ (1 + c_{j+1})``,
    or ``μ + c_{T−1}`` for the last hidden layer, with c_t ≈ Lip(f_t)² from the block's weights
    (:class:`~layerwise.decoupled._curvature.LipschitzEstimate`). A fixed step would diverge as the
    weights grow; this one is stable for ``z_lr < 2`` at any μ and any weight scale.

    At the z-optimum the residuals r_t = z_t − f_t(z_{t−1}) satisfy μ r_t = J_{t+1}ᵀ μ r_{t+1}: they carry
    the backprop chain, so the blocks' gradients there are backprop's along the z path (equal as μ → ∞).
    Depth does make them vanish once z has converged; what decoupling changes is that each block has
    its own optimizer (Adam rescales each block's step) and that blocks train in parallel.

    **Layer parallelism.** When ``torch.distributed`` is initialised (``process_group="auto"``),
    the blocks are split into contiguous stages, one per process (``starts`` gives the first block
    of each stage; default: balanced parameter counts). A process trains only its blocks and keeps
    only its z; neighbouring stages share the boundary z_j and all-reduce their parts of ∂L/∂z_j
    (batch × width values per boundary per z step). Parameters never travel during training; call
    :meth:`gather` to give every process the whole network. Every process must see the same batches.

    Args:
        blocks: the T blocks of the plain network, input to output (e.g. ``Linear+Tanh`` … ``Linear``).
        z: where each step's z come from, the one choice of the method:
            ``StoredZ(store)`` (or the :class:`ZStore` itself): each example's z persists in the store between
            visits (MAC, the seed's design; the store holds the shapes of the T−1 hidden activations, in a stage
            only this process's layers: ``ZStore(..., layers=...)``).
            ``ForwardZ()``: the batch's z restart from a forward pass of the current network at every step,
            then take the z-steps (online alternating minimisation, Choromanska et al., ICML 2019): no store,
            no staleness, augmentation allowed; the z-steps come first (``mode="z-first"``). Under layer
            parallelism the forward pass sends each boundary activation to the next stage.
            ``ForwardDeltaZ()``: ``ForwardZ`` keeping each target change δ_t = z_t − a_t apart from the forward
            activation a_t, the hidden residuals to first order in δ with Jacobian-vector products (see
            :mod:`layerwise.decoupled._delta`): small changes survive float32 at any depth. Top-down sweeps,
            ``loss_h="mse"``, one process.
        loss_y: output loss, mean over the batch (default cross-entropy).
        loss_h: hidden loss, ``"mse"`` (:func:`squared_error`) or a callable ``(ẑ, z) -> scalar``.
        mu: the penalty μ, or a schedule ``k -> μ`` of the step count (see :func:`geometric`).
        optimizer: builds each block's optimizer from its parameters (default Adam, lr 1e-3, fused kernel).
        z_lr: z step size as a fraction of 1/L_j (see above; 1 is the classic safe step). z_steps: z steps
            per batch.
        mode: ``"joint"`` (θ and z from one backward), ``"alternating"`` (θ-step, then z-steps with the
            updated θ, as in MAC) or ``"z-first"`` (z-steps, then the θ-step on the new z: θ always
            fits targets of this step, not of the batch's previous visit). Default: the source's
            (``"joint"`` for stored z, ``"z-first"`` for forward z).
        z_order: ``"jacobi"``: every z_j steps at once from the same point (the output's signal moves
            down one layer per z step; stages work concurrently). ``"sweep"``: top-down Gauss–Seidel,
            z_j steps after z_{j+1} has (one z step carries the output's signal to every layer, for the
            same compute; under layer parallelism the stages take their turn, top stage first). Default: the
            source's (``"sweep"`` for ``ForwardDeltaZ``, else ``"jacobi"``).
        activation_slopes: count the activations' largest slopes in the z-step's curvature bound c_{j+1}
            (sigmoid ¼: 16× larger, still safe z steps; see :class:`LipschitzEstimate`). Off by default.
        process_group: ``"auto"``, ``None`` (no layer parallelism) or a group.
        starts: first block of each stage (layer parallelism only).
        store: deprecated (until 0.8), the same choice as ``z``: ``store`` → ``StoredZ(store)``.
        z_init: deprecated (until 0.8): ``z_init="forward"`` → ``ForwardZ()``.
        delta: deprecated (until 0.8): ``z_init="forward", delta=True`` → ``ForwardDeltaZ()``.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        z: ZSource | ZStore | None = None,
        *,
        loss_y: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        loss_h: Literal["mse"] | Callable[[Tensor, Tensor], Tensor] = "mse",
        mu: float | Callable[[int], float] = 1.0,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        z_lr: float = 1.0,
        z_steps: int = 1,
        mode: Literal["joint", "alternating", "z-first"] | None = None,
        z_order: Literal["jacobi", "sweep"] | None = None,
        activation_slopes: bool = False,
        process_group: Any = "auto",
        starts: Sequence[int] | None = None,
        store: Any = _DEPRECATED,
        z_init: Any = _DEPRECATED,
        delta: Any = _DEPRECATED,
    ) -> None:
        blocks = list(blocks)
        if len(blocks) < 2:
            raise ValueError(f"Invalid blocks: decoupling needs at least 2 blocks, found {len(blocks)}.")
        # the pieces: where z come from, eq. (3) with its curvature bound, this process's stage
        self.source = _source(z, {"store": store, "z_init": z_init, "delta": delta})
        mode = self.source.mode if mode is None else mode  # type: ignore[assignment]
        z_order = self.source.z_order if z_order is None else z_order  # type: ignore[assignment]
        if z_order not in ("jacobi", "sweep"):
            raise ValueError(f"Invalid z_order={z_order!r}. Expected 'jacobi' or 'sweep'.")
        if mode not in MODES:
            raise ValueError(f"Invalid mode={mode!r}. Expected 'joint', 'alternating' or 'z-first'.")
        self.source.check(mode, z_order, len(blocks))
        if not z_lr >= 0 or z_steps < 1:
            raise ValueError(f"Invalid z_lr={z_lr} or z_steps={z_steps}: expected z_lr >= 0 and z_steps >= 1.")
        self.blocks = nn.ModuleList(blocks)
        self.objective = Objective(self.blocks, loss_y, loss_h, mu, activation_slopes)
        self.z_lr, self.z_steps, self.mode, self.z_order = z_lr, z_steps, mode, z_order
        self.parallel = Stage(self.blocks, resolve_group(process_group), starts)
        if self.source.delta and (not self.objective.squared or self.parallel.group is not None):
            raise ValueError(
                f"Invalid {self.source!r} with loss_h={loss_h!r} and "
                f"{'a process group' if self.parallel.group is not None else 'one process'}: the delta form needs "
                "loss_h='mse' and one process (process_group=None)."
            )
        make = optimizer or _default_optimizer
        self.optimizers = {t: make(self.blocks[t].parameters()) for t in self.stage}
        self.steps = 0
        self.gap_history: list[list[float]] = []

    @property
    def store(self) -> ZStore | None:
        """The z store (``StoredZ``), else ``None``."""
        return self.source.store

    @property
    def stage(self) -> range:
        """The blocks this process trains."""
        return self.parallel.blocks

    @property
    def loss_y(self) -> Callable[[Tensor, Tensor], Tensor]:
        """The output loss (settable)."""
        return self.objective.loss_y

    @loss_y.setter
    def loss_y(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.objective.loss_y = fn

    def _run(self) -> ZRun:
        return ZRun(self.objective, self.parallel, self.mu, self.z_lr, self.z_steps, self.z_order, self.steps)

    @property
    def mu(self) -> float:
        """μ at the current step."""
        return self.objective.mu(self.steps)

    def forward(self, x: Tensor) -> Tensor:
        """The PLAIN network f_{T−1}(…f_0(x)): what you evaluate and deploy (after :meth:`gather` when staged)."""
        for block in self.blocks:
            x = block(x)
        return x

    __call__ = forward

    def _need_store(self, what: str) -> StoredZ:
        if not isinstance(self.source, StoredZ):
            raise ValueError(
                f"{what}: this trainer's z come from {self.source!r}, which keeps no z between steps (nothing to "
                "initialise, no stored gap). Use z=StoredZ(ZStore(n, shapes)) for that."
            )
        return self.source

    def initialize(self, loader: Iterable[Any]) -> None:
        """z_t = f_t(…f_0(x)) for every example: a forward pass, so every hidden term starts at 0."""
        self._need_store("initialize").initialize(loader, self.blocks, self.parallel)

    def losses(self, x: Tensor, y: Tensor, zs: Sequence[Tensor] | dict[int, Tensor]) -> dict[str, Tensor]:
        """Eq. (3) for a batch, for this process's blocks: ``{"hidden{t+1}": μ·L_h(f_t(z_{t−1}), z_t), …,
        "output": L_y(f_{T−1}(z_{T−2}), y)}``. ``zs[j]`` is z_j (a list of all, or a dict of :attr:`z_layers`)."""
        z = dict(enumerate(zs)) if not isinstance(zs, dict) else zs
        return self.objective.terms(x, y, z, self.stage, self.mu)

    @staticmethod
    def _check_finite(terms: dict[str, Tensor]) -> None:
        for name, v in terms.items():
            if not math.isfinite(float(v.detach())):
                raise ValueError(
                    f"The {name} term is {float(v.detach())}: nothing was updated. Lower the learning "
                    "rates or the penalty mu."
                )

    def _zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def _theta_step(self, total: Tensor) -> None:
        total.backward(inputs=[p for t in self.stage for p in self.blocks[t].parameters()])
        for opt in self.optimizers.values():
            opt.step()

    def targets(self, batch: Any) -> dict[int, Tensor]:
        """The z this process's θ-step would fit on ``batch`` now (``"z-first"``: after the z-steps), without
        changing the network or the store: for inspection, e.g. each block's gradient ``∂ losses(x, y, z)/∂θ_t``."""
        x, y, idx = unpack_batch(batch)
        run = self._run()
        z = self.source.start(x, idx, run)
        if self.mode == "z-first":
            curv = run.curvatures()
            for _ in range(self.z_steps):
                z = z_step(run, x, y, z, idx, curv)
        return {j: v.detach() for j, v in z.items()}

    def theta_objective(self, batch: Any) -> Tensor:
        """A scalar whose gradient in each block's θ is the gradient the θ-step would apply on ``batch`` now
        (after the z-steps of ``"z-first"`` mode); changes nothing. For inspection, e.g. per-block norms."""
        x, y, _ = unpack_batch(batch)
        if self.source.delta:
            return delta_terms(self._run(), x, y)[1]
        zs = self.targets(batch)
        return sum(self.losses(x, y, zs).values(), torch.zeros((), device=x.device))

    def step(self, batch: Any) -> dict[str, float]:
        """One decoupled step on a batch ``(x, y, idx)``; returns this process's terms of eq. (3) (in
        ``"z-first"`` mode, at the z the θ-step used)."""
        x, y, idx = unpack_batch(batch)
        run = self._run()
        if self.source.delta:
            terms_d, surrogate = delta_terms(run, x, y)
            self._zero_grad()
            self._check_finite(terms_d)
            self._theta_step(surrogate)
            self.steps += 1
            return {k: float(v) for k, v in terms_d.items()}
        z0 = self.source.start(x, idx, run)
        curv = run.curvatures()  # at this step's θ, before its update
        self._zero_grad()
        terms, new = MODES[self.mode](run, Batch(x, y, z0, idx, curv, self._theta_step, self._check_finite))
        self.source.commit(idx, new)
        self.steps += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def feasibility_gap(self, loader: Iterable[Any]) -> dict[int, float]:
        """Per hidden layer j of this process, the root-mean-square ``‖z_j − f_j(z_{j−1})‖`` over the
        examples of ``loader``; appended to :attr:`gap_history` (as a list in layer order)."""
        store = self._need_store("feasibility_gap").store
        assert store is not None
        mine = [t for t in self.stage if t < len(self.blocks) - 1]
        sums = dict.fromkeys(mine, 0.0)
        count = 0
        for batch in loader:
            x, _, idx = unpack_batch(batch)
            z = {j: store.rows(j, idx, x.dtype).to(x.device) for j in self.parallel.z_layers}
            for t in mine:
                inp = x if t == 0 else z[t - 1]
                sums[t] += float((self.blocks[t](inp) - z[t]).pow(2).flatten(1).sum(1).sum())
            count += len(x)
        gap = {t: math.sqrt(s / max(count, 1)) for t, s in sums.items()}
        self.gap_history.append([gap[t] for t in mine])
        return gap

    def gather(self) -> None:
        """Give every process the whole trained network (each block broadcast from the stage that owns it)."""
        self.parallel.gather(self.blocks)

    def consistency_step(self, loader: Iterable[Any], epochs: int = 1) -> float:
        """Refit the LAST block on the true forward activations of the plain network (the z are dropped
        at test time, so the output layer must match what the plain net feeds it). Single-process or
        after :meth:`gather`; returns the mean output loss of the last epoch."""
        if len(self.blocks) - 1 not in self.optimizers:
            raise RuntimeError("consistency_step runs on the process that owns the last block.")
        opt = self.optimizers[len(self.blocks) - 1]
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
        store = self.store
        if store is not None:
            store.flush()
        return {
            "blocks": {t: self.blocks[t].state_dict() for t in self.stage},
            "optimizers": {t: o.state_dict() for t, o in self.optimizers.items()},
            "steps": self.steps,
            "fingerprint": self.source.fingerprint if isinstance(self.source, StoredZ) else None,
            "gap_history": self.gap_history,
            "z": None
            if store is None or store.path is not None
            else {j: store.rows(j, torch.arange(store.n), store.dtype) for j in self.parallel.z_layers},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the same stage layout and store)."""
        if set(state["blocks"]) != set(self.stage):
            raise ValueError(
                f"Invalid checkpoint: it holds blocks {sorted(state['blocks'])}, this process trains "
                f"{list(self.stage)}. Use the same number of processes and starts."
            )
        for t, sd in state["blocks"].items():
            self.blocks[t].load_state_dict(sd)
        for t, sd in state["optimizers"].items():
            self.optimizers[t].load_state_dict(sd)
        self.steps = state["steps"]
        if isinstance(self.source, StoredZ):
            self.source.fingerprint = state["fingerprint"]
        self.gap_history = list(state["gap_history"])
        if state["z"] is not None:
            for j, values in state["z"].items():
                store = self._need_store("load_state_dict").store
                assert store is not None
                store.write(j, torch.arange(values.shape[0]), values.float())
