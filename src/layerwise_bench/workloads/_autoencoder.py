"""``autoencoder``: the deep autoencoder of Hinton & Salakhutdinov (2006) as the LocoProp paper trains it —
``784-1000-500-250-30-250-500-1000-784`` on MNIST (or sklearn's digits), sigmoid cross-entropy per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.data import load_dataset
from layerwise.models import deep_autoencoder, sigmoid_cross_entropy

from ._base import Workload

__all__ = ["AUTOENCODER", "AUTOENCODER_DATASETS", "AutoencoderData", "evaluate", "load_autoencoder_data"]


class AutoencoderData:
    """Training and test inputs (the targets are the inputs)."""

    def __init__(self, train: torch.Tensor, test: torch.Tensor) -> None:
        self.train, self.test = train, test


AUTOENCODER_DATASETS = ("digits", "mnist")
"""The image data sets the autoencoder reconstructs."""


def load_autoencoder_data(
    cfg: Any, data_dir: str | Path | None = None, *, download: bool = False, device: torch.device | str = "cpu"
) -> AutoencoderData:
    """Load the data set of ``cfg``, keep the first ``subset`` training examples, move to ``device``."""
    if cfg.dataset not in AUTOENCODER_DATASETS:
        raise ValueError(
            f"Invalid dataset={cfg.dataset!r} for the autoencoder: it reconstructs images with pixels in [0, 1] "
            f"(sigmoid cross-entropy); expected one of {', '.join(AUTOENCODER_DATASETS)}. MNIST-1D's standardised "
            "signals are for the classification benchmarks (bench depth, aux, similarity)."
        )
    splits = load_dataset(cfg.dataset, data_dir, download=download)
    train = torch.from_numpy(splits.train_x)
    if cfg.subset is not None:
        if cfg.subset > len(train):
            raise ValueError(
                f"Invalid subset={cfg.subset}: the {cfg.dataset} training set has only "
                f"{len(train)} examples. Use a smaller --subset or omit it."
            )
        train = train[: cfg.subset]
    return AutoencoderData(train.to(device), torch.from_numpy(splits.test_x).to(device))


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, batch_size: int = 10000) -> float:
    """Mean per-example loss of ``model`` on ``x`` (inference mode, batched)."""
    total = 0.0
    for i in range(0, len(x), batch_size):
        chunk = x[i : i + batch_size]
        total += float(sigmoid_cross_entropy(model(chunk), chunk)) * len(chunk)
    return total / len(x)


def _evaluate(model: nn.Module, data: AutoencoderData, cfg: Any) -> dict[str, float]:
    return {
        "train_loss": evaluate(model, data.train),
        "test_loss": evaluate(model, data.test) if cfg.evaluate_test else float("nan"),
    }


def _batch(data: AutoencoderData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = data.train[idx]
    return x, x  # the targets are the inputs


def _build(data: AutoencoderData, cfg: Any, generator: torch.Generator) -> nn.Module:
    return deep_autoencoder(data.train.shape[1], activation=cfg.activation, generator=generator).to(data.train.device)


AUTOENCODER = Workload(
    name="autoencoder",
    summary="the LocoProp paper's deep autoencoder (784-1000-500-250-30-...-784), sigmoid cross-entropy",
    dataset="mnist",
    load=lambda cfg, data_dir, download, device: load_autoencoder_data(cfg, data_dir, download=download, device=device),
    build_model=_build,
    loss_fn=sigmoid_cross_entropy,
    batch=_batch,
    evaluate=_evaluate,
    metrics={
        "train_loss": "sigmoid cross-entropy per image, summed over pixels, on the whole training set",
        "test_loss": "the same on the test set",
    },
    score="train_loss",
    batch_size=1000,
    reference="rmsprop",
    reference_epochs=10,
    evaluate_in_equal_time=False,
)
