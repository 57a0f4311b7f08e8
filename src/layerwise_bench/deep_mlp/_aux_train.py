"""Training of one (method, seed) of ``layerwise bench aux``: the user's own loop around :func:`layerwise.backward`."""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from layerwise import backward
from layerwise.telemetry import NonFiniteLoss

from ..core._harness import progress_bar
from ._aux_model import build_setup

__all__ = ["AuxConfig", "accuracy", "train_aux"]


@dataclass(frozen=True)
class AuxConfig:
    """Everything that decides the numbers of ``layerwise bench aux`` (checked on ``--resume``)."""

    dataset: str = "mnist"
    depth: int = 20
    width: int = 256
    heads: int = 3
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    subset: int | None = None
    target_acc: float = 0.9

    def make_optimizer(self, params: list[Any]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        raise ValueError(f"Invalid optimizer={self.optimizer!r}. Expected 'sgd' or 'adam'.")


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor, batch: int = 2000) -> float:
    """Accuracy of the MAIN output (a plain forward pass of the model)."""
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def _epoch_mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]} if rows else {}


def _trace(
    epoch: int, losses: list[dict[str, float]], weights: list[dict[str, float]], points: int = 12
) -> list[dict[str, Any]]:
    """About ``points`` evenly spaced steps of the epoch that diverged: loss values and weights."""
    stride = max(1, math.ceil(len(losses) / points))
    keep = sorted(set(range(0, len(losses), stride)) | ({len(losses) - 1} if losses else set()))
    return [
        {"epoch": epoch, "step": i + 1, "losses": losses[i], "weights": weights[i] if i < len(weights) else {}}
        for i in keep
    ]


def train_aux(
    method: str,
    seed: int,
    cfg: AuxConfig,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``method`` with ``seed``; returns its entry (per-epoch records, weights, warnings, status)."""
    train_x, train_y, test_x, test_y = data
    n = len(train_x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    setup = build_setup(
        method,
        seed=seed,
        depth=cfg.depth,
        width=cfg.width,
        heads=cfg.heads,
        in_features=train_x.shape[1],
        num_classes=int(train_y.max()) + 1,
        optimizer=cfg.make_optimizer,
        total_steps=cfg.epochs * steps_per_epoch,
        device=train_x.device,
    )
    w = setup.weighting
    entry: dict[str, Any] = {
        "method": method,
        "seed": seed,
        "status": "running",
        "terms": list(w.terms),
        "records": [],
        "weights": [],
        "useless_warnings": [],
        "construction_warnings": setup.construction_warnings,
    }
    gen = torch.Generator().manual_seed(seed)
    train_time = 0.0
    bar = progress_bar(cfg.epochs * steps_per_epoch, f"{method}/{seed}", progress)
    try:
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(n, generator=gen).to(train_x.device)
            sums: dict[str, float] = {}
            steps: list[dict[str, float]] = []  # this epoch's loss values, for the trace of a divergence
            weights: list[dict[str, float]] = []  # this epoch's term weights, one row per step
            t0 = time.perf_counter()
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                setup.optimizer.zero_grad(set_to_none=True)
                losses = setup.losses(train_x[idx], train_y[idx])
                with warnings.catch_warnings(record=True) as ws:
                    warnings.simplefilter("always")
                    try:
                        backward(losses, w, params=setup.params)
                    except NonFiniteLoss as exc:
                        entry.update(
                            status="diverged",
                            error=f"epoch {epoch}, step {b + 1}: {exc}",
                            at_divergence={
                                "losses": {k: float(v.detach()) for k, v in losses.items()},
                                "weights": w.current,
                            },
                            trace=_trace(epoch, steps, weights),
                        )
                        return entry
                for warning in ws:
                    entry["useless_warnings"].append({"epoch": epoch, "step": b + 1, "message": str(warning.message)})
                setup.optimizer.step()
                weights.append(w.current)
                steps.append({k: float(v.detach()) for k, v in losses.items()})
                for k, v in steps[-1].items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
            train_time += time.perf_counter() - t0
            acc = accuracy(setup.model, test_x, test_y)
            record = {
                "epoch": epoch,
                "train_time": train_time,
                "test_acc": acc,
                "train_main_loss": sums["main"] / steps_per_epoch,
                "aux_losses": {k: v / steps_per_epoch for k, v in sums.items() if k != "main"},
            }
            entry["records"].append(record)
            entry["weights"].append(_epoch_mean(weights))
            bar.set_postfix(acc=f"{acc:.3f}", loss=f"{record['train_main_loss']:.3f}")
            if on_epoch is not None:
                on_epoch(entry)
        entry["final_weights"] = w.current
        entry["summary"] = w.summary()
        entry["useless_terms"] = w.useless_terms()
        entry["status"] = "complete"
        return entry
    finally:
        bar.close()
        setup.close()
