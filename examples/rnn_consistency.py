"""Seed case 2: a GRU with a cosine consistency loss between consecutive hidden states.

Task: read a noisy sine wave and predict its next value at every time step. The consistency term
(``1 − cos(h_t, h_{t+1})``) and the task loss are balanced by GradNorm on the GRU's parameters
(the last layer both terms share), with gradient telemetry on the GRU and the head.

    python examples/rnn_consistency.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.losses import Consistency
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry
from layerwise.weighting import GradNorm


class Forecaster(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x)
        return self.head(states)


def batch(n: int = 32, length: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    phase = torch.rand(n, 1) * 6.28
    t = torch.arange(length + 1).float() * 0.3 + phase
    wave = torch.sin(t) + 0.05 * torch.randn(n, length + 1)
    return wave[:, :-1, None], wave[:, 1:, None]


def main(steps: int = 200, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = Forecaster()
    taps = Taps(model, {"states": "gru"})  # the GRU's output: every time step's hidden state
    consistency = Consistency(dim=1)
    weighting = GradNorm(["main", "consistency"], model.gru.parameters(), alpha=1.5, lr=0.01)
    telemetry = GradientTelemetry({"gru": model.gru, "head": model.head}, every=5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        x, y = batch()
        pred = model(x)
        losses = {"main": F.mse_loss(pred, y), "consistency": consistency(taps["states"])}
        first = first or float(losses["main"].detach())
        opt.zero_grad()
        layerwise.backward(losses, weighting, params=list(model.parameters()), telemetry=telemetry)
        opt.step()
    print(weighting.summary())
    return {
        "first_main": first,
        "last_main": float(losses["main"].detach()),
        "weights": weighting.current,
        "telemetry": telemetry.history,
    }


if __name__ == "__main__":
    print(main())
