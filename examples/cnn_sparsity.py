"""Seed case 3: a CNN with an L1 sparsity loss on each feature block, learned weights, telemetry.

On sklearn's 8×8 digits. Each block's sparsity weight starts small (0.1, as the seed advises) and is a running
average of ``max(0, cos(∇L_main, ∇L_sparsity))`` on the shared convolutional trunk (``Usefulness``,
``mode="cosine"``): sparsity that fights the classifier is switched off and reported. The cosine
heatmap of the telemetry shows which blocks conflict.

    python examples/cnn_sparsity.py
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.data import load_digits
from layerwise.losses import Sparsity
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry, layer_sets
from layerwise.weighting import Usefulness


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def main(steps: int = 150, seed: int = 0, out_dir: str | None = None) -> dict:
    torch.manual_seed(seed)
    d = load_digits()
    x, y = torch.from_numpy(d.train_x).view(-1, 1, 8, 8), torch.from_numpy(d.train_y)
    model = cnn()
    blocks = {f"block{i}": str(i) for i in range(3)}
    taps = Taps(model, blocks)
    sparsity = Sparsity()
    trunk = list(model[:3].parameters())
    weighting = Usefulness(["main", *blocks], trunk, main="main", mode="cosine", beta=0.9, window=50, init=0.1)
    telemetry = GradientTelemetry(layer_sets(model[:3]), every=10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    with warnings.catch_warnings(record=True) as reports:  # "this loss contributes nothing" notes
        warnings.simplefilter("always")
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,))
            out = model(x[idx])
            losses = {"main": F.cross_entropy(out, y[idx]), **{b: sparsity(taps[b]) for b in blocks}}
            first = first or float(losses["main"].detach())
            opt.zero_grad()
            layerwise.backward(losses, weighting, params=list(model.parameters()), telemetry=telemetry)
            opt.step()
    with torch.no_grad():
        xt = torch.from_numpy(d.test_x).view(-1, 1, 8, 8)
        acc = (model(xt).argmax(1) == torch.from_numpy(d.test_y)).float().mean().item()
    print(weighting.summary())
    plots = telemetry.plot(out_dir) if out_dir else []
    return {
        "first_main": first,
        "last_main": float(losses["main"].detach()),
        "test_acc": acc,
        "weights": weighting.current,
        "telemetry": telemetry.history,
        "reports": [str(r.message) for r in reports],
        "plots": plots,
    }


if __name__ == "__main__":
    print({k: v for k, v in main(out_dir="cnn_sparsity_telemetry").items() if k != "telemetry"})
