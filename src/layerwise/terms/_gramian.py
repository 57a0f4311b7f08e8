"""Gramians G_S = J_S J_Sᵀ of per-term gradients, for several (possibly overlapping) parameter sets at once."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["embed", "gramian_block", "sum_blocks"]


_SMALL = 1 << 14  # parameters up to this size: one matmul on a stacked copy


def gramian_block(column: list[Tensor]) -> Tensor:
    """J Jᵀ for the K gradients of one parameter (the rows of J), in at least float32.

    Small parameters, and any parameter off the CPU: one matmul on a stacked copy. Large parameters
    on the CPU: dot products on views, no copy (faster there than stacking K·n numbers, measured for
    K = 2..8); the squared norms come first, and rows that are exactly zero (a term that does not
    reach the parameter) need no further products.
    """
    dtype = functools.reduce(torch.promote_types, (g.dtype for g in column), torch.float32)
    flat = [g.reshape(-1).to(dtype) for g in column]
    if flat[0].numel() <= _SMALL or flat[0].device.type != "cpu":
        j = torch.stack(flat)
        return j @ j.T
    k = len(flat)
    g = [[0.0] * k for _ in range(k)]
    for t, f in enumerate(flat):
        g[t][t] = float(torch.dot(f, f))
    live = [t for t in range(k) if g[t][t] != 0]  # NaN and inf stay, and propagate
    for a, b in itertools.combinations(live, 2):
        g[a][b] = g[b][a] = float(torch.dot(flat[a], flat[b]))
    return torch.tensor(g, dtype=torch.float64)


def embed(block: Tensor, present: Sequence[int], k: int) -> Tensor:
    """The K × K matrix that is ``block`` on the rows and columns ``present`` and zero elsewhere."""
    if len(present) == k:
        return block
    full = torch.zeros(k, k, dtype=block.dtype, device=block.device)
    idx = torch.tensor(list(present), device=block.device)
    full[idx.unsqueeze(1), idx] = block
    return full


def sum_blocks(blocks: Mapping[int, Tensor], sets: Mapping[str, Sequence[int]], k: int) -> dict[str, Tensor]:
    """``{S: Σ_{i∈S} blocks[i]}`` (missing blocks are zero), on the CPU in float64, one transfer for all sets."""
    if not blocks:
        return {name: torch.zeros(k, k, dtype=torch.float64) for name in sets}
    device = next(iter(blocks.values())).device
    dtype = functools.reduce(torch.promote_types, (b.dtype for b in blocks.values()))
    out = []
    for idx in sets.values():
        acc = torch.zeros(k, k, dtype=dtype, device=device)
        for i in idx:
            if i in blocks:
                acc += blocks[i].to(acc.device, acc.dtype)
        out.append(acc)
    stacked = torch.stack(out).to("cpu", torch.float64)
    return dict(zip(sets, stacked.unbind(0), strict=True))
