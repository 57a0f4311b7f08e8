"""Gramians G_S = J_S J_Sᵀ of per-term gradients, for several (possibly overlapping) parameter sets at once."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["set_gramians"]


def set_gramians(rows: Sequence[Sequence[Tensor | None]], sets: Mapping[str, Sequence[int]]) -> dict[str, Tensor]:
    """``{S: G_S}`` where ``rows[k][i]`` is the gradient of term k w.r.t. parameter i (None: zero).

    G_S = Σ_{i∈S} J_i J_iᵀ, with J_i the K × n_i matrix of the flattened gradients of parameter i:
    one matmul per parameter, shared by every set that contains it, so overlapping sets ("all",
    "shared", one per layer) cost no more than their union. Computed in at least float32 on the
    gradients' device; the result is on the CPU in float64 (one transfer for all sets).
    """
    k = len(rows)
    blocks: dict[int, Tensor] = {}
    for i in sorted({i for idx in sets.values() for i in idx}):
        column = [r[i] for r in rows]
        ref = next((g for g in column if g is not None), None)
        if ref is None:
            continue
        dtype = torch.promote_types(ref.dtype, torch.float32)
        j = torch.stack([(torch.zeros_like(ref) if g is None else g).reshape(-1).to(dtype) for g in column])
        blocks[i] = j @ j.T
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
