"""Optional TensorBoard sink for benchmark records (extra ``layerwise[tensorboard]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TensorBoardSink"]


class TensorBoardSink:
    """Write each epoch record as scalars ``<method>/<key>`` (step = epoch) under ``log_dir``."""

    KEYS = ("train_loss", "test_loss", "lr", "train_time", "step_time_median")

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorBoard logging needs the tensorboard package: pip install 'layerwise[tensorboard]'"
            ) from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, method: str, record: dict[str, Any]) -> None:
        for key in self.KEYS:
            self.writer.add_scalar(f"{method}/{key}", record[key], record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
