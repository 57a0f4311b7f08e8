"""Lightning: :class:`GradientTelemetryMonitor`, a callback that logs per-term gradient telemetry to every logger.

Everything else needs no integration code (``docs/lightning.md``): ``LocoProp`` and ``KFAC`` are returned
from ``configure_optimizers`` and step under automatic optimization, and a weighting goes in
``training_step`` through :func:`layerwise.weighted_loss`::

    def training_step(self, batch, index):
        losses = self.losses(batch)                                     # {"main": ..., "aux": ...}
        return layerwise.weighted_loss(losses, self.weighting, params=self.parameters(), telemetry=self.telemetry)

    trainer = L.Trainer(callbacks=[GradientTelemetryMonitor(model.telemetry)], logger=CSVLogger("logs"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..telemetry import GradientTelemetry, Snapshot
from ._require import require

if TYPE_CHECKING:
    import lightning.pytorch as pl

    Callback = pl.Callback
else:
    Callback = require("lightning.pytorch", "lightning", "layerwise.integrations.lightning").Callback

__all__ = ["GradientTelemetryMonitor"]


class GradientTelemetryMonitor(Callback):
    """Log each :class:`~layerwise.GradientTelemetry` snapshot to every logger of the ``Trainer``.

    The telemetry measures where the training step passes it (``layerwise.weighted_loss(...,
    telemetry=tel)`` or ``layerwise.backward``), on its own schedule (``every=N`` counts those calls, i.e.
    micro-batches under ``accumulate_grad_batches``). This callback joins the telemetry's sinks and, after
    each training batch, writes what was measured as scalars (``prefix`` + the tags of
    :meth:`~layerwise.telemetry.Snapshot.scalars`: ``loss/<term>``, ``weight/<term>``, ``norm/<set>/<term>``,
    ``contribution/<set>/<term>``, ``cosine/<set>/<a>~<b>``) to ``trainer.loggers`` at
    ``step=trainer.global_step``, as ``LearningRateMonitor`` does (``self.log`` would drop the measured steps
    that ``log_every_n_steps`` skips). Its checkpoint state is the telemetry's (step counter, term names,
    history), so a resumed run measures the same steps.
    """

    def __init__(self, telemetry: GradientTelemetry, *, prefix: str = "telemetry/") -> None:
        if not isinstance(telemetry, GradientTelemetry):
            raise TypeError(
                f"GradientTelemetryMonitor: expected a layerwise.GradientTelemetry, got {type(telemetry).__name__}. "
                "Build one with GradientTelemetry(param_sets, every=N) and pass the same object to "
                "layerwise.weighted_loss(..., telemetry=...) in training_step."
            )
        self.telemetry = telemetry
        self.prefix = prefix
        self._pending: list[Snapshot] = []
        telemetry.sinks.append(self)

    @property
    def state_key(self) -> str:
        return f"{type(self).__qualname__}{{'prefix': {self.prefix!r}}}"

    def write(self, snapshot: Snapshot) -> None:
        """The telemetry's sink: keep the snapshot until the batch ends."""
        self._pending.append(snapshot)

    def close(self) -> None:
        self._pending.clear()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        pending, self._pending = self._pending, []
        for snapshot in pending:
            metrics = {self.prefix + tag: value for tag, value in snapshot.scalars().items()}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"telemetry": self.telemetry.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.telemetry.load_state_dict(state_dict["telemetry"])
