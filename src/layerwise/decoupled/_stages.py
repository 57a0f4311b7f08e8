"""Layer parallelism: contiguous groups of blocks on separate processes, exchanging boundary gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._distributed import CollectiveFailure, broadcast_module

__all__ = ["Boundary", "Stage", "StageFailure", "split_blocks", "stage_of"]


class StageFailure(CollectiveFailure):
    """A collective with a neighbouring stage failed (a process died or timed out)."""


def split_blocks(blocks: Sequence[nn.Module], parts: int) -> list[int]:
    """Start index of each of ``parts`` contiguous groups, balancing parameter counts (≈ FLOPs of an MLP)."""
    if parts > len(blocks):
        raise ValueError(f"Cannot split {len(blocks)} blocks over {parts} processes: use at most {len(blocks)}.")
    sizes = [sum(p.numel() for p in b.parameters()) for b in blocks]
    total, starts, acc = sum(sizes), [0], 0
    for i, s in enumerate(sizes[:-1]):
        acc += s
        if len(starts) < parts and acc >= total * len(starts) / parts and len(blocks) - (i + 1) >= parts - len(starts):
            starts.append(i + 1)
    while len(starts) < parts:  # fall back: one block per remaining part at the end
        starts.append(len(blocks) - (parts - len(starts)))
    return starts


def stage_of(starts: Sequence[int], n_blocks: int, rank: int) -> range:
    """The blocks of ``rank`` given the start indices of every stage."""
    stop = starts[rank + 1] if rank + 1 < len(starts) else n_blocks
    return range(starts[rank], stop)


class Boundary:
    """The hidden activation z_j shared by two neighbouring stages (block j is the last block of the
    first, block j+1 the first block of the second). Both keep a replica of z_j; each step they
    all-reduce their parts of ∂L/∂z_j (B × |z_j| values in the gradient's dtype, plus the curvature bound
    of the z step and a checksum of the batch indices), so both apply the same update and the replicas
    stay equal. With ``z_init="forward"`` the first stage also sends z_j forward (:meth:`forward`)."""

    def __init__(self, layer: int, ranks: tuple[int, int], group: Any, src: int | None = None) -> None:
        self.layer, self.ranks, self.group = layer, ranks, group
        self.src = ranks[0] if src is None else src  # global rank of the first stage (the sender of z_j)

    def _failed(self, step: int, what: str, exc: Exception) -> StageFailure:
        return StageFailure(
            f"step {step}: the {what} of z_{self.layer} between ranks {self.ranks} failed "
            f"({type(exc).__name__}: {exc}). A peer process died or timed out; resume every "
            "process from its last checkpoint."
        )

    def forward(self, h: Tensor | None, like: Tensor, step: int) -> Tensor:
        """The first stage sends its forward activation z_j (``h``); the second receives it (``h=None``; device
        and dtype of ``like``). A header with the shape goes first."""
        try:
            header = torch.zeros(9, dtype=torch.int64, device=like.device)
            if h is not None:
                header[0] = h.dim()
                header[1 : 1 + h.dim()] = torch.tensor(h.shape)
            dist.broadcast(header, src=self.src, group=self.group)
            if h is None:
                h = torch.empty(header[1 : 1 + int(header[0])].tolist(), dtype=like.dtype, device=like.device)
            dist.broadcast(h.contiguous(), src=self.src, group=self.group)
        except Exception as exc:  # gloo raises RuntimeError; NCCL can raise DistBackendError
            raise self._failed(step, "forward transfer", exc) from exc
        return h

    def exchange(self, grad: Tensor, idx: Tensor, step: int, curvature: float) -> tuple[Tensor, float]:
        """Sum both stages' ∂L/∂z_j and their ``curvature`` terms (the stage owning block j+1 holds c_{j+1},
        the other 0), so that both take the same z step."""
        return self.finish(self.start(grad, idx, step, curvature))

    def start(self, grad: Tensor, idx: Tensor, step: int, curvature: float) -> tuple[Any, ...]:
        """Launch :meth:`exchange` without waiting (work can overlap it); :meth:`finish` completes it."""
        check = torch.sin(idx.double() * 0.6180339887 + 1.0).sum().reshape(1).to(grad.device, grad.dtype)
        extra = torch.tensor([curvature], dtype=grad.dtype, device=grad.device)
        buf = torch.cat([grad.detach().reshape(-1), extra, check])
        try:
            work = dist.all_reduce(buf, group=self.group, async_op=True)
        except Exception as exc:  # gloo raises RuntimeError; NCCL can raise DistBackendError
            raise self._failed(step, "exchange", exc) from exc
        return work, buf, check, grad.shape, step

    def finish(self, pending: tuple[Any, ...]) -> tuple[Tensor, float]:
        work, buf, check, shape, step = pending
        try:
            work.wait()
        except Exception as exc:
            raise self._failed(step, "exchange", exc) from exc
        tol = 1e-9 if buf.dtype == torch.float64 else 1e-4
        if not math.isclose(float(buf[-1]), 2 * float(check), rel_tol=tol, abs_tol=tol):
            raise ValueError(
                f"step {step}: ranks {self.ranks} trained on different batches. Give every process the "
                "same loader order (same sampler seed); layer parallelism splits layers, not data."
            )
        return buf[:-2].view(shape), float(buf[-2])


class Stage:
    """This process's part of a run: its blocks, the z layers it holds and the boundaries it shares.

    One process (``group=None``) owns every block. Under layer parallelism the blocks are split into
    contiguous stages, one per process of ``group`` (``starts``: the first block of each; default:
    balanced parameter counts); neighbouring stages share the boundary z_j through a :class:`Boundary`.
    Building it broadcasts rank 0's network to every stage.
    """

    def __init__(self, blocks: nn.ModuleList, group: Any, starts: Sequence[int] | None = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group) if group is not None else 0
        world = dist.get_world_size(group) if group is not None else 1
        n = len(blocks)
        self.starts = list(starts) if starts is not None else split_blocks(list(blocks), world)
        if (
            len(self.starts) != world
            or self.starts[0] != 0
            or sorted(set(self.starts)) != self.starts
            or self.starts[-1] >= n
        ):
            raise ValueError(
                f"Invalid starts={self.starts}: expected {world} increasing block indices from 0, below {n}."
            )
        self.blocks = stage_of(self.starts, n, self.rank)
        a, b = self.blocks.start, self.blocks.stop
        self.z_layers = [j for j in range(n - 1) if a - 1 <= j <= b - 1]
        self.boundaries: list[Boundary] = []
        if group is None:
            return
        broadcast_module(blocks, group)  # every stage starts from rank 0's network
        for r in range(world - 1):  # every process creates every subgroup, in the same order
            ranks = (r, r + 1)
            global_ranks = (
                [dist.get_global_rank(group, q) for q in ranks] if group is not dist.group.WORLD else list(ranks)
            )
            sub = dist.new_group(global_ranks)
            if self.rank in ranks:
                self.boundaries.append(Boundary(self.starts[r + 1] - 1, ranks, sub, src=global_ranks[0]))

    def boundary(self, layer: int) -> Boundary:
        """The boundary this stage shares at z_layer ``layer``."""
        return next(bd for bd in self.boundaries if bd.layer == layer)

    @torch.no_grad()
    def forward_z(self, blocks: nn.ModuleList, x: Tensor, step: int) -> dict[int, Tensor]:
        """This stage's z from a forward pass of the current network (the input boundary comes from the
        previous stage, the output boundary goes to the next one)."""
        n, a, b = len(blocks), self.blocks.start, self.blocks.stop
        z: dict[int, Tensor] = {}
        h = x
        if a > 0:
            h = z[a - 1] = self.boundary(a - 1).forward(None, x, step)
        for t in range(a, min(b, n - 1)):
            h = z[t] = blocks[t](h)
        if b < n:
            self.boundary(b - 1).forward(z[b - 1], x, step)
        return z

    def gather(self, blocks: nn.ModuleList) -> None:
        """Give every process the whole network (each block broadcast from the stage that owns it)."""
        if self.group is None:
            return
        with torch.no_grad():
            for t, block in enumerate(blocks):
                owner = max(r for r, s in enumerate(self.starts) if s <= t)
                src = dist.get_global_rank(self.group, owner) if self.group is not dist.group.WORLD else owner
                for p in [*block.parameters(), *block.buffers()]:
                    dist.broadcast(p.data, src=src, group=self.group)
