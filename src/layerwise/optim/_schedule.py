"""The LocoProp benchmark's learning-rate schedule: linear warm-up, then linear decay."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["warmup_linear_decay", "default_warmup_epochs"]


def default_warmup_epochs(epochs: int) -> int:
    """5% of the run, rounded (the official 100-epoch run warms up for 5 epochs)."""
    return round(0.05 * epochs)


def warmup_linear_decay(epochs: int, warmup_epochs: int | None = None) -> Callable[[int], float]:
    """Return the multiplier of the base learning rate for each epoch ``e`` (0-based).

    ``e / W`` for ``e < W`` (epoch 0 has lr 0), then ``(E - e) / (E - W)``, reaching ``1/(E-W)``
    at the last epoch. Use it per epoch with ``torch.optim.lr_scheduler.LambdaLR``.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Invalid epochs={epochs!r}. Must be an integer >= 1.")
    w = default_warmup_epochs(epochs) if warmup_epochs is None else warmup_epochs
    if not isinstance(w, int) or not 0 <= w < epochs:
        raise ValueError(f"Invalid warmup_epochs={w!r}. Must be an integer in [0, epochs={epochs}).")

    def factor(epoch: int) -> float:
        if epoch < w:
            return epoch / w
        return max(epochs - epoch, 0) / (epochs - w)

    return factor
