"""Layer parallelism: contiguous groups of blocks on separate processes, exchanging boundary gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Boundary", "StageFailure", "split_blocks", "stage_of"]


class StageFailure(RuntimeError):
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
    all-reduce their parts of ∂L/∂z_j (B × |z_j| values in the gradient's dtype, plus a checksum of the batch indices), so
    both apply the same update and the replicas stay equal."""

    def __init__(self, layer: int, ranks: tuple[int, int], group: Any) -> None:
        self.layer, self.ranks, self.group = layer, ranks, group

    def exchange(self, grad: Tensor, idx: Tensor, step: int) -> Tensor:
        check = torch.sin(idx.double() * 0.6180339887 + 1.0).sum().reshape(1).to(grad.device, grad.dtype)
        buf = torch.cat([grad.detach().reshape(-1), check])
        try:
            dist.all_reduce(buf, group=self.group)
        except Exception as exc:  # gloo raises RuntimeError; NCCL can raise DistBackendError
            raise StageFailure(f"step {step}: the exchange of z_{self.layer} between ranks {self.ranks} failed "
                               f"({type(exc).__name__}: {exc}). A peer process died or timed out; resume every "
                               "process from its last checkpoint.") from exc
        tol = 1e-9 if grad.dtype == torch.float64 else 1e-4
        if not math.isclose(float(buf[-1]), 2 * float(check), rel_tol=tol, abs_tol=tol):
            raise ValueError(f"step {step}: ranks {self.ranks} trained on different batches. Give every process the "
                             "same loader order (same sampler seed); layer parallelism splits layers, not data.")
        return buf[:-1].view_as(grad)
