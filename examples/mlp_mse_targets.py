"""Seed case 1: an MLP with MSE-to-target losses at hidden layers 1 and 2, learned weights, telemetry.

The targets are the activations of a teacher MLP (trained first, then frozen), read through taps:
FitNets-style hints. The weights of the two hint losses are learned from the MAIN loss
(``Usefulness``, one-step look-ahead), so a hint that does not help the classifier fades out.

    python examples/mlp_mse_targets.py                  # digits, learned weights
    python examples/mlp_mse_targets.py --dataset mnist  # a 784-128-128-10 MLP on MNIST

``main(layer_weight=w)`` runs the same model with fixed weights ``w`` on both hints (``0``: no layer loss),
the comparison of ``benchmarks/seed-examples-cpu``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.data import load_dataset
from layerwise.losses import MSETarget
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry
from layerwise.weighting import Fixed, Usefulness, Weighting


def mlp(inputs: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10))


def main(
    steps: int = 300,
    seed: int = 0,
    teacher_steps: int = 200,
    layer_weight: float | None = None,
    dataset: str = "digits",
    data_dir: str | None = None,
) -> dict:
    """Train the student; ``layer_weight``: ``None`` learns the hints' weights, a number fixes them (0: no hints)."""
    torch.manual_seed(seed)
    d = load_dataset(dataset, data_dir)
    x, y = torch.from_numpy(d.train_x).flatten(1), torch.from_numpy(d.train_y)
    width = 32 if dataset == "digits" else 128
    teacher = mlp(x.shape[1], width)
    opt_t = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(teacher_steps):
        idx = torch.randint(0, len(x), (256,))
        opt_t.zero_grad()
        F.cross_entropy(teacher(x[idx]), y[idx]).backward()
        opt_t.step()
    teacher.requires_grad_(False)

    student = mlp(x.shape[1], width)
    hints = Taps(teacher, {"layer1": "1", "layer2": "3"}, detach=True)
    taps = Taps(student, {"layer1": "1", "layer2": "3"})
    losses_fn = {name: MSETarget(hints.ref(name)) for name in ("layer1", "layer2")} if layer_weight != 0 else {}
    weighting: Weighting = (
        Usefulness(["main", "layer1", "layer2"], list(student[:3].parameters()), main="main", lr=0.02)
        if layer_weight is None
        else Fixed({"main": 1.0, **{name: layer_weight for name in losses_fn}})
    )
    telemetry = GradientTelemetry({"all": student, "layer1": student[0], "layer2": student[2]}, every=10)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    first = None
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        teacher(x[idx])  # fills the hint taps
        out = student(x[idx])
        losses = {"main": F.cross_entropy(out, y[idx]), **{name: fn(taps[name]) for name, fn in losses_fn.items()}}
        first = first or float(losses["main"].detach())
        opt.zero_grad()
        layerwise.backward(losses, weighting, params=list(student.parameters()), telemetry=telemetry)
        opt.step()
    with torch.no_grad():
        test_x = torch.from_numpy(d.test_x).flatten(1)
        acc = (student(test_x).argmax(1) == torch.from_numpy(d.test_y)).float().mean().item()
    print(weighting.summary())
    last = telemetry.history[-1]
    print("gradient norms on layer1:", {k: round(v, 4) for k, v in last.norms["layer1"].items()})
    return {
        "first_main": first,
        "last_main": float(losses["main"].detach()),
        "test_acc": acc,
        "weights": weighting.current,
        "telemetry": telemetry.history,
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--data-dir", default=None, help="MNIST in DIR/mnist (default: $LAYERWISE_DATA_DIR)")
    parser.add_argument("--layer-weight", type=float, default=None, help="fixed hint weight (default: learned)")
    a = parser.parse_args()
    r = main(dataset=a.dataset, data_dir=a.data_dir, layer_weight=a.layer_weight)
    print({k: v for k, v in r.items() if k != "telemetry"})
