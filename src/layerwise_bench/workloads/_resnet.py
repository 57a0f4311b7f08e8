"""``resnet-mnist``: a small ResNet (He et al. 2016) on MNIST, with BatchNorm and residual adds; metrics
``train_loss``, ``test_loss`` and ``test_accuracy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.data import load_dataset

from ._base import BASELINES, MODERN_LRS, LabelledData, Workload, evaluate_classifier, labelled_batch, seeded

__all__ = ["RESNET_MNIST", "BasicBlock", "SmallResNet"]

_MEAN, _STD = 0.1307, 0.3081  # MNIST's pixel mean and standard deviation


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, a residual add, and a 1x1 strided projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class SmallResNet(nn.Module):
    """Stem conv (``stem_stride`` 2 halves every map: a quarter of the cost), then stages of ``blocks`` basic
    blocks at ``width * 2**i`` channels (stride 2 from the second stage), global average pooling and a linear
    ``head``."""

    def __init__(
        self, width: int = 16, stages: int = 2, blocks: int = 1, stem_stride: int = 1, classes: int = 10
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        layers: list[nn.Module] = []
        cin = width
        for i in range(stages):
            cout = width * 2**i
            for j in range(blocks):
                layers.append(BasicBlock(cin, cout, stride=2 if i > 0 and j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.head(torch.flatten(self.pool(x), 1))


def _load(cfg: Any, data_dir: str | Path | None, download: bool, device: torch.device | str) -> LabelledData:
    splits = load_dataset("mnist", data_dir, download=download)

    def images(a: Any) -> torch.Tensor:
        return ((torch.from_numpy(a) - _MEAN) / _STD).reshape(-1, 1, 28, 28)

    train_x, train_y = images(splits.train_x), torch.from_numpy(splits.train_y).long()
    subset = cfg.subset if cfg.subset is not None else RESNET_MNIST.subset.get(cfg.size)
    if subset is not None:
        if subset > len(train_x):
            raise ValueError(
                f"Invalid subset={subset}: MNIST has {len(train_x)} training images. Use a smaller --subset."
            )
        train_x, train_y = train_x[:subset], train_y[:subset]
    test_x, test_y = images(splits.test_x), torch.from_numpy(splits.test_y).long()
    if cfg.size == "tiny":  # the tests' preset: a slice of the test set keeps each evaluation cheap
        test_x, test_y = test_x[:512], test_y[:512]
    info = {"source": "MNIST (IDX files)", "train_examples": len(train_x), "test_examples": len(test_x)}
    return LabelledData(train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device), info)


def _build(data: LabelledData, cfg: Any, generator: torch.Generator) -> nn.Module:
    return seeded(lambda: SmallResNet(**RESNET_MNIST.size_options(cfg.size)), generator).to(data.train.device)


RESNET_MNIST = Workload(
    name="resnet-mnist",
    summary="a small ResNet (BatchNorm, in-place ReLU, residual adds, a strided stage) on MNIST, cross-entropy",
    dataset="mnist",
    load=_load,
    build_model=_build,
    loss_fn=F.cross_entropy,
    batch=labelled_batch,
    evaluate=evaluate_classifier,
    metrics={
        "train_loss": "mean cross-entropy over the training examples used (eval mode), nats",
        "test_loss": "mean cross-entropy over the 10,000 test images, nats",
        "test_accuracy": "fraction of the 10,000 test images classified right",
    },
    score="train_loss",
    batch_size=128,
    sizes={
        "cpu": {"width": 16, "stages": 2, "blocks": 1, "stem_stride": 2},
        "gpu": {"width": 32, "stages": 3, "blocks": 2, "stem_stride": 1},
        "tiny": {"width": 4, "stages": 2, "blocks": 1, "stem_stride": 2},  # the tests'
    },
    subset={"cpu": None, "gpu": None, "tiny": 256},
    default_lrs={**MODERN_LRS, "nesterov": 0.1, "locoprop-cnn": 1.0},
    methods=(*BASELINES, "locoprop-cnn"),
    reference="adamw",
    reference_epochs=5,
)
