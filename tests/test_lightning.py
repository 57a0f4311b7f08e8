"""LocoProp and K-FAC returned from ``configure_optimizers`` in a real Lightning ``Trainer`` (automatic
optimization, with gradient accumulation), against the hand-written loop, in float64."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from layerwise import KFAC, LocoProp

BATCH, STEPS = 8, 3


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 3)
    ).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH * STEPS * 2, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (48,), generator=g)


def _locoprop(net: nn.Module) -> torch.optim.Optimizer:
    return LocoProp(
        net, lr=1e-2, steps=2, inner="adam", gamma=3.0, other_optimizer=lambda ps: torch.optim.Adam(ps, 1e-2)
    )


def _kfac(net: nn.Module) -> torch.optim.Optimizer:
    net[3].requires_grad_(False)  # K-FAC trains nn.Linear layers only
    return KFAC(net, lr=0.05, damping=1e-2, inv_every=1, likelihood="empirical")


class Module(L.LightningModule):
    def __init__(self, net: nn.Module, make: object) -> None:
        super().__init__()
        self.net, self.make = net, make

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make(self.net)  # type: ignore[operator]


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("make", [_locoprop, _kfac], ids=["locoprop", "kfac"])
def test_automatic_optimization_equals_the_hand_written_loop(make: object, accumulate: int) -> None:
    x, y = _data()
    net, ref = _net(), _net()
    module = Module(net, make)
    trainer = L.Trainer(
        max_steps=STEPS,
        accumulate_grad_batches=accumulate,
        precision="64-true",
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers and the like
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=BATCH // accumulate))
    opt = make(ref)  # type: ignore[operator]
    for step in range(STEPS):
        opt.zero_grad()
        part = slice(step * BATCH, (step + 1) * BATCH)
        F.cross_entropy(ref(x[part]), y[part]).backward()
        opt.step()
    moved = [not torch.equal(p, q) for p, q in zip(net.parameters(), _net().parameters(), strict=True)]
    assert any(moved)
    for (n, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")
