"""What one step's z updates need: eq. (3) at this step's μ, this process's stage, the z step's size, number
and order, and the step count (for the boundary exchange's messages). The z-step functions (``_zstep``,
``_delta``) and the z sources take this, not the trainer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from ._objective import Objective
from ._stages import Stage

__all__ = ["ZRun"]


@dataclass(frozen=True)
class ZRun:
    """One step's view of a decoupled run (see the module docstring)."""

    objective: Objective
    stage: Stage
    mu: float
    z_lr: float
    z_steps: int
    z_order: str
    step: int

    def losses(self, x: Tensor, y: Tensor, z: Mapping[int, Tensor]) -> dict[str, Tensor]:
        """Eq. (3) for this stage's blocks at this step's μ."""
        return self.objective.terms(x, y, z, self.stage.blocks, self.mu)

    def curvatures(self) -> dict[int, float]:
        """c_{j+1} for each of this stage's z layers (0 where the next block is another stage's)."""
        return self.objective.curvatures(self.stage.z_layers, self.stage.blocks)

    def move(self, j: int, z: Tensor, grad: Tensor, c: float, batch: int) -> Tensor:
        """z_j − (z_lr / L_j) × the per-example gradient (the batch mean's gradient × batch)."""
        return (z - (self.z_lr * batch / self.objective.bound(j, c, self.mu)) * grad).detach()
