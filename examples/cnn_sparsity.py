"""Seed case 3: a CNN with an L1 sparsity loss on each feature block, learned weights, telemetry.

On sklearn's 8×8 digits. Each block's sparsity weight starts small (0.1, as the seed advises) and is a running
average of ``max(0, cos(∇L_main, ∇L_sparsity))`` on the shared convolutional trunk (``Usefulness``,
``mode="cosine"``): sparsity that fights the classifier is switched off and reported. The cosine
heatmap of the telemetry shows which blocks conflict.

    python examples/cnn_sparsity.py                  # digits, learned weights
    python examples/cnn_sparsity.py --dataset mnist  # the same CNN on 28×28 MNIST

``main(layer_weight=w)`` fixes every block's sparsity weight at ``w`` (``0``: no layer loss), the comparison of
``benchmarks/seed-examples-cpu``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.data import load_dataset
from layerwise.losses import Sparsity
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry, layer_sets
from layerwise.weighting import Fixed, Usefulness, Weighting


def cnn(side: int = 8) -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(16 * (side // 2) ** 2, 10),
    )


def main(
    steps: int = 150,
    seed: int = 0,
    out_dir: str | None = None,
    layer_weight: float | None = None,
    dataset: str = "digits",
    data_dir: str | None = None,
) -> dict:
    """Train the CNN; ``layer_weight``: ``None`` learns the blocks' weights, a number fixes them (0: no sparsity)."""
    torch.manual_seed(seed)
    d = load_dataset(dataset, data_dir)
    side = 8 if dataset == "digits" else 28
    x, y = torch.from_numpy(d.train_x).view(-1, 1, side, side), torch.from_numpy(d.train_y)
    model = cnn(side)
    blocks = {f"block{i}": str(i) for i in range(3)} if layer_weight != 0 else {}
    taps: Taps | dict[str, torch.Tensor] = Taps(model, blocks) if blocks else {}  # no layer loss: nothing tapped
    sparsity = Sparsity()
    trunk = list(model[:3].parameters())
    weighting: Weighting = (
        Usefulness(["main", *blocks], trunk, main="main", mode="cosine", beta=0.9, window=50, init=0.1)
        if layer_weight is None
        else Fixed({"main": 1.0, **{b: layer_weight for b in blocks}})
    )
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
        xt = torch.from_numpy(d.test_x).view(-1, 1, side, side)
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
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--data-dir", default=None, help="MNIST in DIR/mnist (default: $LAYERWISE_DATA_DIR)")
    parser.add_argument("--layer-weight", type=float, default=None, help="fixed sparsity weight (default: learned)")
    a = parser.parse_args()
    r = main(out_dir="cnn_sparsity_telemetry", dataset=a.dataset, data_dir=a.data_dir, layer_weight=a.layer_weight)
    print({k: v for k, v in r.items() if k != "telemetry"})
