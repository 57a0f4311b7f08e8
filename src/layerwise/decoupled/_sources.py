"""Where a step's z come from: the one choice :class:`~layerwise.decoupled.DecoupledTrainer` takes as ``z=``.

- :class:`StoredZ`: each example's z persists in a :class:`ZStore` between visits (MAC, the seed's design);
  inputs are fingerprinted so that augmentation or unstable indices are caught.
- :class:`ForwardZ`: the batch's z restart from a forward pass of the current network at every step
  (online alternating minimisation, Choromanska et al., ICML 2019): no store, no staleness; the z steps come
  first (``mode="z-first"``).
- :class:`ForwardDeltaZ`: the same, with each target change δ_t kept apart from the forward activation and the
  hidden residuals evaluated to first order (``_delta``): small changes survive float32 at any depth; top-down
  sweeps (``z_order="sweep"``).

Each source names the step order it implies (:attr:`ZSource.mode`, :attr:`ZSource.z_order`, the trainer's
defaults) and rejects the ones it cannot run (:meth:`ZSource.check`). :func:`make_source` maps the deprecated
``store``/``z_init``/``delta`` flags to a source.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ._context import ZRun
from ._data import unpack_batch
from ._stages import Stage
from ._store import ZStore

__all__ = ["ForwardDeltaZ", "ForwardZ", "StoredZ", "ZSource", "make_source"]


class ZSource:
    """The z of a batch before its z steps (:meth:`start`), and what happens to them after (:meth:`commit`)."""

    name = "source"
    delta = False  # whether the step runs in delta form
    store: ZStore | None = None
    mode = "joint"  # the trainer's default step order with this source
    z_order = "jacobi"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def start(self, x: Tensor, idx: Tensor, run: ZRun) -> dict[int, Tensor]:
        raise NotImplementedError

    def commit(self, idx: Tensor, z: dict[int, Tensor]) -> None:
        """Keep the updated z (nothing for sources that recompute them)."""

    def check(self, mode: str, z_order: str, n_blocks: int) -> None:
        """Raise when this source cannot run ``mode`` and ``z_order`` on ``n_blocks`` blocks."""


class ForwardZ(ZSource):
    """z from a forward pass of the current network, at every step; the z steps, then the θ-step."""

    name = "forward"
    mode = "z-first"

    def start(self, x: Tensor, idx: Tensor, run: ZRun) -> dict[int, Tensor]:
        return run.stage.forward_z(run.objective.blocks, x, run.step)

    def check(self, mode: str, z_order: str, n_blocks: int) -> None:
        if mode != "z-first":
            raise ValueError(
                f"Invalid mode={mode!r} with {self!r}: z from a forward pass has no residual before its z-steps, "
                "so the θ-step must follow them. Pass mode='z-first' (the default with this source)."
            )


class ForwardDeltaZ(ForwardZ):
    """:class:`ForwardZ` in delta form (one process, squared hidden loss, top-down sweeps)."""

    delta = True
    z_order = "sweep"

    def check(self, mode: str, z_order: str, n_blocks: int) -> None:
        super().check(mode, z_order, n_blocks)
        if z_order != "sweep":
            raise ValueError(
                f"Invalid z_order={z_order!r} with {self!r}: the delta form runs top-down sweeps. Pass "
                "z_order='sweep' (the default with this source)."
            )


class StoredZ(ZSource):
    """Each example's z kept in ``store`` between visits; :meth:`initialize` fills it by a forward pass."""

    name = "stored"

    def __init__(self, store: ZStore) -> None:
        if not isinstance(store, ZStore):
            raise TypeError(
                f"Invalid store: StoredZ keeps every example's z in a ZStore, found {type(store).__name__}. "
                "Build ZStore(n, shapes) with one shape per hidden layer."
            )
        self.store = store
        self.fingerprint: Tensor | None = None

    def __repr__(self) -> str:
        return f"StoredZ({self.store!r})"

    def check(self, mode: str, z_order: str, n_blocks: int) -> None:
        assert self.store is not None
        if self.store.depth != n_blocks - 1:
            raise ValueError(
                f"Invalid store: {n_blocks} blocks have {n_blocks - 1} hidden activations, but the "
                f"store holds {self.store.depth}. Build ZStore(n, shapes) with one shape per hidden layer."
            )

    @torch.no_grad()
    def initialize(self, loader: Iterable[Any], blocks: nn.ModuleList, stage: Stage) -> None:
        """z_t = f_t(…f_0(x)) for every example: a forward pass, so every hidden term starts at 0."""
        store = self.store
        assert store is not None
        n = len(getattr(loader, "dataset", ())) if hasattr(loader, "dataset") else None
        if n is not None and n != store.n:
            raise ValueError(
                f"Invalid loader: its dataset has {n} examples but the store was built for "
                f"{store.n}. Build ZStore(n={n}, ...)."
            )
        fingerprint = torch.full((store.n,), float("nan"), dtype=torch.float64)
        last = max(stage.z_layers) if stage.z_layers else -1
        for batch in loader:
            x, _, idx = unpack_batch(batch)
            fingerprint[idx] = x.detach().flatten(1).double().sum(1).cpu()
            h = x
            for t in range(last + 1):
                h = blocks[t](h)
                if t in stage.z_layers:
                    store.write(t, idx, h)
        self.fingerprint = fingerprint

    def _check_inputs(self, x: Tensor, idx: Tensor) -> None:
        if self.fingerprint is None:
            raise RuntimeError("The z store is not initialised: call trainer.initialize(loader) before training.")
        now = x.detach().flatten(1).double().sum(1).cpu()
        before = self.fingerprint[idx.cpu()]
        if torch.isnan(before).any():
            i = int(idx[torch.isnan(before).nonzero()[0, 0]])
            raise ValueError(
                f"Example {i} was not in the loader given to initialize(): its z was never set. "
                "Initialise with a loader over the whole training set."
            )
        bad = ~torch.isclose(now, before, rtol=1e-4, atol=1e-4)
        if bad.any():
            i = int(idx[bad.nonzero()[0, 0]])
            raise ValueError(
                f"The input of example {i} differs from the one z was initialised with: random data "
                "augmentation (or a shuffled dataset without stable indices) breaks the stored "
                "activations. Turn augmentation off for decoupled training, or re-initialise."
            )

    def start(self, x: Tensor, idx: Tensor, run: ZRun) -> dict[int, Tensor]:
        self._check_inputs(x, idx)
        store = self.store
        assert store is not None
        return {j: store.rows(j, idx, x.dtype).to(x.device) for j in run.stage.z_layers}

    def commit(self, idx: Tensor, z: dict[int, Tensor]) -> None:
        assert self.store is not None
        for j, v in z.items():
            self.store.write(j, idx, v)


def make_source(store: ZStore | None, z_init: str, delta: bool) -> ZSource:
    """The z source the deprecated ``store``, ``z_init`` and ``delta`` flags described, or a clear error."""
    if z_init not in ("stored", "forward"):
        raise ValueError(f"Invalid z_init={z_init!r}. Expected 'stored' or 'forward'.")
    if store is not None and z_init == "forward":
        raise ValueError(
            "Invalid store: z_init='forward' recomputes z at every step and keeps no store. Pass "
            "store=None, or z_init='stored' to use the ZStore."
        )
    if store is None and z_init == "stored":
        raise ValueError(
            "Invalid store=None: z_init='stored' keeps every example's z in a ZStore. Build "
            "ZStore(n, shapes), or pass z_init='forward', mode='z-first' (no store)."
        )
    if not isinstance(delta, bool):
        raise ValueError(f"Invalid delta={delta!r}: expected True or False.")
    if delta and z_init != "forward":
        raise ValueError(
            "Invalid delta=True with z_init='stored': delta form needs z_init='forward' (ForwardDeltaZ())."
        )
    if store is not None:
        return StoredZ(store)
    return ForwardDeltaZ() if delta else ForwardZ()
