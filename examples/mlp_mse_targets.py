"""Seed case 1: an MLP with MSE-to-target losses at hidden layers 1 and 2, learned weights, telemetry.

The targets are the activations of a teacher MLP (trained first, then frozen), read through taps:
FitNets-style hints. The weights of the two hint losses are learned from the MAIN loss
(``Usefulness``, one-step look-ahead), so a hint that does not help the classifier fades out.

    python examples/mlp_mse_targets.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.data import load_digits
from layerwise.losses import MSETarget
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry
from layerwise.weighting import Usefulness


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))


def main(steps: int = 300, seed: int = 0, teacher_steps: int = 200) -> dict:
    torch.manual_seed(seed)
    d = load_digits()
    x, y = torch.from_numpy(d.train_x), torch.from_numpy(d.train_y)
    teacher = mlp()
    opt_t = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(teacher_steps):
        opt_t.zero_grad()
        F.cross_entropy(teacher(x), y).backward()
        opt_t.step()
    teacher.requires_grad_(False)

    student = mlp()
    hints = Taps(teacher, {"layer1": "1", "layer2": "3"}, detach=True)
    taps = Taps(student, {"layer1": "1", "layer2": "3"})
    losses_fn = {name: MSETarget(hints.ref(name)) for name in ("layer1", "layer2")}
    weighting = Usefulness(["main", "layer1", "layer2"], list(student[:3].parameters()), main="main", lr=0.02)
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
        acc = (student(torch.from_numpy(d.test_x)).argmax(1) == torch.from_numpy(d.test_y)).float().mean().item()
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
    print(main())
