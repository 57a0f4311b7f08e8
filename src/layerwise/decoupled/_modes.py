"""The three orders of a decoupled step's θ- and z-updates (the trainer's ``mode``), as one function each.

- ``joint``: θ and z move from one backward at this step's (θ, z); under Jacobi order the θ-step runs
  while the boundary exchange of the z step is in flight;
- ``alternating`` (MAC): the θ-step, then the z steps with the updated θ;
- ``z-first``: the z steps, then the θ-step on the new z (θ fits targets of this step).

Each takes the step's :class:`ZRun`, the batch, the z it starts from and the curvature terms; calls
``theta_step(total)`` exactly once (after ``check(terms)``); and returns the eq. (3) terms it reports
and the new z.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._context import ZRun
from ._zstep import jacobi_step, z_step

__all__ = ["MODES", "Mode"]

ThetaStep = Callable[[Tensor], None]
Check = Callable[[dict[str, Tensor]], None]
Mode = Callable[
    [ZRun, Tensor, Tensor, dict[int, Tensor], Tensor, dict[int, float], ThetaStep, Check],
    tuple[dict[str, Tensor], dict[int, Tensor]],
]


def _z_steps(
    run: ZRun, x: Tensor, y: Tensor, z: dict[int, Tensor], idx: Tensor, curv: dict[int, float], n: int
) -> dict[int, Tensor]:
    for _ in range(n):
        z = z_step(run, x, y, z, idx, curv)
    return z


def _terms(run: ZRun, x: Tensor, y: Tensor, z: dict[int, Tensor], check: Check) -> tuple[dict[str, Tensor], Tensor]:
    terms = run.losses(x, y, z)
    check(terms)
    return terms, sum(terms.values(), torch.zeros((), device=x.device))


def z_first(
    run: ZRun,
    x: Tensor,
    y: Tensor,
    z0: dict[int, Tensor],
    idx: Tensor,
    curv: dict[int, float],
    theta_step: ThetaStep,
    check: Check,
) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """The z steps, then the θ-step on the new z."""
    new = _z_steps(run, x, y, z0, idx, curv, run.z_steps)
    terms, total = _terms(run, x, y, new, check)
    theta_step(total)
    return terms, new


def joint(
    run: ZRun,
    x: Tensor,
    y: Tensor,
    z0: dict[int, Tensor],
    idx: Tensor,
    curv: dict[int, float],
    theta_step: ThetaStep,
    check: Check,
) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """The first z step and the θ-step from one graph at this step's (θ, z); then the remaining z steps."""
    zs = {j: v.requires_grad_(True) for j, v in z0.items()}
    terms, total = _terms(run, x, y, zs, check)
    if run.z_order == "jacobi":  # the θ-step overlaps the boundary exchange
        new = jacobi_step(run, total, zs, idx, True, curv, overlap=lambda: theta_step(total))
    else:
        new = z_step(run, x, y, z0, idx, curv)
        theta_step(total)
    return terms, _z_steps(run, x, y, new, idx, curv, run.z_steps - 1)


def alternating(
    run: ZRun,
    x: Tensor,
    y: Tensor,
    z0: dict[int, Tensor],
    idx: Tensor,
    curv: dict[int, float],
    theta_step: ThetaStep,
    check: Check,
) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """The θ-step, then the z steps with the updated θ (MAC)."""
    zs = {j: v.requires_grad_(True) for j, v in z0.items()}
    terms, total = _terms(run, x, y, zs, check)
    theta_step(total)
    return terms, _z_steps(run, x, y, {j: z.detach() for j, z in zs.items()}, idx, curv, run.z_steps)


MODES: dict[str, Mode] = {"joint": joint, "alternating": alternating, "z-first": z_first}
