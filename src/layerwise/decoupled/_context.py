"""What the z steps read of a decoupled run: eq. (3)'s blocks, losses and coefficients, and this process's stage.

:class:`~layerwise.decoupled.DecoupledTrainer` provides it; the z-step functions (``_zstep``, ``_delta``) are
typed against this protocol, not the trainer, so they import nothing of the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from torch import Tensor, nn

from ._stages import Boundary

__all__ = ["ZContext"]


class ZContext(Protocol):
    """Eq. (3): blocks f_0..f_{T−1}, hidden loss L_h, output loss L_y, penalty μ; the z step's size and order."""

    @property
    def blocks(self) -> nn.ModuleList: ...

    @property
    def T(self) -> int: ...

    @property
    def z_lr(self) -> float: ...

    @property
    def z_order(self) -> str: ...

    @property
    def z_steps(self) -> int: ...

    @property
    def steps(self) -> int: ...

    @property
    def stage(self) -> range: ...

    @property
    def z_layers(self) -> list[int]: ...

    @property
    def boundaries(self) -> list[Boundary]: ...

    @property
    def loss_h(self) -> Callable[[Tensor, Tensor], Tensor]: ...

    @property
    def loss_y(self) -> Callable[[Tensor, Tensor], Tensor]: ...

    @property
    def mu(self) -> float: ...

    def losses(self, x: Tensor, y: Tensor, zs: Sequence[Tensor] | dict[int, Tensor]) -> dict[str, Tensor]: ...

    def _forward_z(self, x: Tensor) -> dict[int, Tensor]: ...

    def _lipschitz(self, block: nn.Module) -> float: ...
