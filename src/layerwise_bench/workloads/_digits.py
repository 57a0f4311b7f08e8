"""``digits-resnet``, ``digits-vgg``, ``digits-mixer``, ``digits-transformer``: four architecture families on
sklearn's 8x8 digits (offline), cross-entropy; seconds per run, for choosing LocoProp's recipe per family."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.data import load_dataset

from ._base import BASELINES, MODERN_LRS, LabelledData, Workload, evaluate_classifier, labelled_batch, seeded
from ._lm import Block
from ._resnet import SmallResNet

__all__ = ["DIGITS_FAMILIES", "DigitsTransformer", "Mixer"]


def _vgg(width: int) -> nn.Module:
    """Two 3x3 convolutions with in-place ReLU, a max-pool and a two-layer classifier (VGG's shape)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * width, 64),
        nn.ReLU(inplace=True),
        nn.Linear(64, 10),
    )


class MixerBlock(nn.Module):
    """MLP-Mixer block (Tolstikhin et al. 2021): a token-mixing GELU MLP, then a channel-mixing one, each pre-norm
    and residual."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_fc1, self.token_fc2 = nn.Linear(tokens, 2 * tokens), nn.Linear(2 * tokens, tokens)
        self.channel_fc1, self.channel_fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, tokens, dim)
        y = self.token_fc2(F.gelu(self.token_fc1(self.norm1(x).transpose(1, 2))))
        x = x + y.transpose(1, 2)
        return x + self.channel_fc2(F.gelu(self.channel_fc1(self.norm2(x))))


class Mixer(nn.Module):
    """2x2 patches of the 8x8 image as 16 tokens, ``depth`` Mixer blocks, mean pooling and a linear ``head``."""

    def __init__(self, dim: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 2, stride=2)
        self.blocks = nn.Sequential(*(MixerBlock(16, dim) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(x).mean(1))


class DigitsTransformer(nn.Module):
    """The image's 8 rows as tokens: a linear embedding plus learned positions, ``depth`` pre-norm blocks with
    bidirectional attention (``lm-bytes``' block), mean pooling and a linear ``head``."""

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.randn(1, 8, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, causal=False) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(x.reshape(x.shape[0], 8, 8)) + self.pos)
        return self.head(self.norm(x).mean(1))


def _load(cfg: Any, data_dir: str | Path | None, download: bool, device: torch.device | str) -> LabelledData:
    splits = load_dataset("digits", data_dir, download=download)
    train = torch.from_numpy(splits.train_x)
    mean, std = float(train.mean()), float(train.std())

    def images(a: Any) -> torch.Tensor:
        return ((torch.from_numpy(a) - mean) / std).reshape(-1, 1, 8, 8).to(device)

    subset = cfg.subset if cfg.subset is not None else cfg.task.subset.get(cfg.size)
    if subset is not None and subset > len(train):
        raise ValueError(f"Invalid subset={subset}: digits has {len(train)} training images. Use a smaller --subset.")
    n = subset or len(train)
    train_y, test_y = (torch.from_numpy(y).long().to(device) for y in (splits.train_y[:n], splits.test_y))
    info = {"source": "sklearn digits (8x8, standardised)", "train_examples": n, "test_examples": len(test_y)}
    return LabelledData(images(splits.train_x[:n]), train_y, images(splits.test_x), test_y, info)


_FAMILIES: dict[str, tuple[str, Callable[..., nn.Module], dict[str, dict[str, int]]]] = {
    "resnet": (
        "a ResNet (BatchNorm, in-place ReLU, residual adds, a strided stage)",
        SmallResNet,
        {"cpu": {"width": 16, "stages": 2, "blocks": 1}, "tiny": {"width": 4, "stages": 2, "blocks": 1}},
    ),
    "vgg": ("a VGG-style CNN (in-place ReLU, max-pool)", _vgg, {"cpu": {"width": 16}, "tiny": {"width": 4}}),
    "mixer": (
        "an MLP-Mixer (LayerNorm, GELU, token and channel MLPs)",
        Mixer,
        {"cpu": {"dim": 32, "depth": 2}, "tiny": {"dim": 8, "depth": 1}},
    ),
    "transformer": (
        "a pre-norm transformer over the image's rows (bidirectional attention, GELU MLP)",
        DigitsTransformer,
        {"cpu": {"dim": 32, "depth": 2, "heads": 4}, "tiny": {"dim": 8, "depth": 1, "heads": 2}},
    ),
}


def _family(family: str) -> Workload:
    summary, make, sizes = _FAMILIES[family]
    name = f"digits-{family}"

    def build(data: LabelledData, cfg: Any, generator: torch.Generator) -> nn.Module:
        return seeded(lambda: make(**cfg.task.size_options(cfg.size)), generator).to(data.train.device)

    return Workload(
        name=name,
        summary=f"{summary} on sklearn's 8x8 digits, cross-entropy",
        dataset="digits",
        load=_load,
        build_model=build,
        loss_fn=F.cross_entropy,
        batch=labelled_batch,
        evaluate=evaluate_classifier,
        metrics={
            "train_loss": "mean cross-entropy over the training images (eval mode), nats",
            "test_loss": "mean cross-entropy over the 359 test images, nats",
            "test_accuracy": "fraction of the 359 test images classified right",
        },
        score="train_loss",
        batch_size=64,
        sizes=sizes,
        subset={"cpu": None, "tiny": 128},
        default_lrs={**MODERN_LRS, "nesterov": 0.1, "locoprop-cnn": 1.0, "locoprop-cnn-momentum": 1.0},
        methods=(
            *BASELINES,
            "locoprop-cnn",
            "locoprop-cnn-momentum",
            "locoprop-transformer",
            "locoprop-eigen",
        ),
        reference="adamw",
        reference_epochs=20,
    )


DIGITS_FAMILIES: dict[str, Workload] = {f"digits-{f}": _family(f) for f in _FAMILIES}
"""The four families by workload name."""
