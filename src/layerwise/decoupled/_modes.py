"""The three orders of a decoupled step's θ- and z-updates (the trainer's ``mode``), as one function each.

- ``joint``: θ and z move from one backward at this step's (θ, z); under Jacobi order the θ-step runs
  while the boundary exchange of the z step is in flight;
- ``alternating`` (MAC): the θ-step, then the z steps with the updated θ;
- ``z-first``: the z steps, then the θ-step on the new z (θ fits targets of this step).

Each takes the step's :class:`ZRun` and :class:`Batch`; calls ``theta_step(total)`` exactly once (after
``check(terms)``); and returns the eq. (3) terms it reports and the new z.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ._context import ZRun
from ._zstep import jacobi_step, z_step

__all__ = ["MODES", "Batch", "Mode"]

ThetaStep = Callable[[Tensor], None]
Check = Callable[[dict[str, Tensor]], None]


class Batch(NamedTuple):
    """One step's inputs: the batch, the z it starts from, the curvature terms, and the trainer's θ-step and
    finiteness check."""

    x: Tensor
    y: Tensor
    z0: dict[int, Tensor]
    idx: Tensor
    curv: dict[int, float]
    theta_step: ThetaStep
    check: Check


Mode = Callable[[ZRun, Batch], tuple[dict[str, Tensor], dict[int, Tensor]]]


def _z_steps(run: ZRun, b: Batch, z: dict[int, Tensor], n: int) -> dict[int, Tensor]:
    for _ in range(n):
        z = z_step(run, b.x, b.y, z, b.idx, b.curv)
    return z


def _terms(run: ZRun, b: Batch, z: dict[int, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    terms = run.losses(b.x, b.y, z)
    b.check(terms)
    return terms, sum(terms.values(), torch.zeros((), device=b.x.device))


def z_first(run: ZRun, b: Batch) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """The z steps, then the θ-step on the new z."""
    new = _z_steps(run, b, b.z0, run.z_steps)
    terms, total = _terms(run, b, new)
    b.theta_step(total)
    return terms, new


def joint(run: ZRun, b: Batch) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """The first z step and the θ-step from one graph at this step's (θ, z); then the remaining z steps."""
    zs = {j: v.requires_grad_(True) for j, v in b.z0.items()}
    terms, total = _terms(run, b, zs)
    if run.z_order == "jacobi":  # the θ-step overlaps the boundary exchange
        new = jacobi_step(run, total, zs, b.idx, True, b.curv, overlap=lambda: b.theta_step(total))
    else:
        new = z_step(run, b.x, b.y, b.z0, b.idx, b.curv)
        b.theta_step(total)
    return terms, _z_steps(run, b, new, run.z_steps - 1)


def alternating(run: ZRun, b: Batch) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """The θ-step, then the z steps with the updated θ (MAC)."""
    zs = {j: v.requires_grad_(True) for j, v in b.z0.items()}
    terms, total = _terms(run, b, zs)
    b.theta_step(total)
    return terms, _z_steps(run, b, {j: z.detach() for j, z in zs.items()}, run.z_steps)


MODES: dict[str, Mode] = {"joint": joint, "alternating": alternating, "z-first": z_first}
