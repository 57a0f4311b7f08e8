"""Seed case 2: a GRU with a cosine consistency loss between consecutive hidden states.

Task: read a noisy sine wave and predict its next value at every time step. The consistency term
(``1 − cos(h_t, h_{t+1})``) and the task loss are balanced by GradNorm on the GRU's parameters
(the last layer both terms share), with gradient telemetry on the GRU and the head.

    python examples/rnn_consistency.py

``main(layer_weight=w)`` fixes the consistency weight at ``w`` (``0``: no layer loss), the comparison of
``benchmarks/seed-examples-cpu``; ``test_mse`` is the task loss on 1,000 fresh sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.losses import Consistency
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry
from layerwise.weighting import Fixed, GradNorm, Weighting


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


def main(steps: int = 200, seed: int = 0, layer_weight: float | None = None) -> dict:
    """Train the forecaster; ``layer_weight``: ``None`` balances the terms by GradNorm, a number fixes the
    consistency weight (0: no consistency loss)."""
    torch.manual_seed(seed)
    model = Forecaster()
    taps = Taps(model, {"states": "gru"})  # the GRU's output: every time step's hidden state
    consistency = Consistency(dim=1)
    terms = ["main", "consistency"] if layer_weight != 0 else ["main"]
    weighting: Weighting = (
        GradNorm(terms, model.gru.parameters(), alpha=1.5, lr=0.01)
        if layer_weight is None
        else Fixed({"main": 1.0, **({"consistency": layer_weight} if layer_weight else {})})
    )
    telemetry = GradientTelemetry({"gru": model.gru, "head": model.head}, every=5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        x, y = batch()
        pred = model(x)
        losses = {"main": F.mse_loss(pred, y)}
        if "consistency" in terms:
            losses["consistency"] = consistency(taps["states"])
        first = first or float(losses["main"].detach())
        opt.zero_grad()
        layerwise.backward(losses, weighting, params=list(model.parameters()), telemetry=telemetry)
        opt.step()
    print(weighting.summary())
    with torch.no_grad():
        with torch.random.fork_rng():
            torch.manual_seed(10_000 + seed)  # fresh sequences, the same for every weighting of a seed
            tx, ty = batch(1000)
        test_mse = float(F.mse_loss(model(tx), ty))
    return {
        "first_main": first,
        "last_main": float(losses["main"].detach()),
        "test_mse": test_mse,
        "weights": weighting.current,
        "telemetry": telemetry.history,
    }


if __name__ == "__main__":
    print(main())
