"""Training of one (depth, activation, method) of ``layerwise bench depth``: an ordinary loop around a runner."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core._harness import progress_bar
from ._depth_methods import make_runner

__all__ = ["DepthConfig", "DepthData", "grad_ratio", "train_depth"]


def _diverged(exc: Exception) -> bool:
    """A non-finite loss or value (recorded as "diverged"; the benchmark goes on with the next run)."""
    return isinstance(exc, FloatingPointError) or (
        isinstance(exc, ValueError) and any(w in str(exc) for w in ("nan", "NaN", "inf"))
    )


@dataclass(frozen=True)
class DepthConfig:
    """Everything that decides the numbers of one run of ``layerwise bench depth`` (checked on ``--resume``)."""

    dataset: str = "mnist"
    subset: int | None = None
    epochs: int = 3
    batch_size: int = 128
    width: int = 256
    seed: int = 0
    eval_examples: int = 10_000  # the plain network's training loss/accuracy: the first N training examples
    probe_examples: int = 1_000  # the fixed batch (first N training examples) of the per-layer gradient norms
    sgd_lr: float = 0.05
    momentum: float = 0.9
    adam_lr: float = 1e-3
    decoupled_init: str = "orthogonal"
    decoupled_mode: str = "z-first"
    decoupled_lr: float = 1e-3
    z_lr: float = 1.0
    z_steps: int = 1
    z_order: str = "sweep"
    forward_z_steps: int = 1
    delta: bool = False  # decoupled-forward: target changes kept apart from the forward activations
    activation_slopes: bool = False  # decoupled: count the sigmoid's slope ¼ in the z-step's curvature bound
    mu_start: float = 10.0
    mu_factor: float = 1.25
    consistency_epochs: int = 1
    locoprop_init: str = "glorot"
    locoprop_lr: float = 1.0
    locoprop_steps: int = 3
    locoprop_gamma: float = 100.0
    locoprop_damping: float = 10.0
    ds_every: int = 5
    dtype: str = "float32"  # of the data, every model and the z store: "float32" or "float64"


@dataclass
class DepthData:
    """Training tensors (rows are the dataset indices the decoupled store is keyed by) and the test set."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def num_classes(self) -> int:
        return int(max(int(self.train_y.max()), int(self.test_y.max()))) + 1


def _batches(x: Tensor, y: Tensor, size: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    idx = torch.arange(len(x), device=x.device)
    return [(x[i : i + size], y[i : i + size], idx[i : i + size]) for i in range(0, len(x), size)]


@torch.no_grad()
def _evaluate(model: torch.nn.Module, x: Tensor, y: Tensor, batch: int = 2000) -> tuple[float, float]:
    """Cross-entropy and accuracy of the PLAIN forward network."""
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch])
        loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return loss / len(x), correct / len(x)


def grad_ratio(norms: list[float], mu: float | None = None) -> dict[str, Any]:
    """``max/min`` of per-layer gradient norms; ``None`` when a layer's norm is exactly 0 (then ``zero_layers``).
    ``mu``: the hidden terms' penalty weight at the probe (decoupled training), recorded with the norms."""
    zero = sum(1 for v in norms if v == 0.0)
    finite = all(math.isfinite(v) for v in norms)
    ratio = max(norms) / min(norms) if norms and zero == 0 and finite else None
    return {"norms": norms, "ratio": ratio, "zero_layers": zero, **({} if mu is None else {"mu": mu})}


def train_depth(
    method: str,
    activation: str,
    depth: int,
    cfg: DepthConfig,
    data: DepthData,
    *,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_model: Callable[[torch.nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train ``method`` on a plain MLP of ``depth`` hidden layers; returns its entry (records, gradient norms).
    ``on_model`` receives the trained plain network when training completes."""
    x, y = data.train_x, data.train_y
    n, steps = len(x), math.ceil(len(x) / cfg.batch_size)
    runner = make_runner(
        method,
        activation=activation,
        depth=depth,
        width=cfg.width,
        in_features=x.shape[1],
        num_classes=data.num_classes,
        n=n,
        steps_per_epoch=steps,
        cfg=cfg,
        device=x.device,
    )
    ev = min(cfg.eval_examples, n)
    eval_batches = _batches(x[:ev], y[:ev], 2000)
    pn = min(cfg.probe_examples, n)
    probe = (x[:pn], y[:pn], torch.arange(pn, device=x.device))
    entry: dict[str, Any] = {
        "method": method,
        "activation": activation,
        "depth": depth,
        "status": "running",
        "records": [],
        "grad_norms": {},
        "linear_layers": depth + 1,
        **runner.extras(),
    }
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = progress_bar(cfg.epochs * steps, f"d{depth}/{activation}/{method}", progress)
    train_time = 0.0
    try:
        t0 = time.perf_counter()
        runner.start(lambda: _batches(x, y, 2000))
        train_time += time.perf_counter() - t0
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(n, generator=gen).to(x.device)
            total = 0.0
            t0 = time.perf_counter()
            for b in range(steps):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                value = runner.step(x[idx], y[idx], idx)
                if not math.isfinite(value):
                    raise FloatingPointError(f"the training objective is {value}")
                total += value
                if epoch == 1 and b == 0:
                    train_time += time.perf_counter() - t0
                    entry["grad_norms"]["first_step"] = grad_ratio(runner.probe(*probe), runner.penalty())
                    t0 = time.perf_counter()
                bar.update(1)
            extra = runner.finish(lambda: _batches(x, y, 2000)) if epoch == cfg.epochs else {}
            train_time += time.perf_counter() - t0
            loss, acc = _evaluate(runner.model, x[:ev], y[:ev])
            _, test_acc = _evaluate(runner.model, data.test_x, data.test_y)
            g = grad_ratio(runner.probe(*probe), runner.penalty())  # every epoch end: "stays within" is measured
            record = {
                "epoch": epoch,
                "train_time": train_time,
                "objective": total / steps,
                "train_loss": loss,
                "train_acc": acc,
                "test_acc": test_acc,
                "grad_ratio": g["ratio"],
                "grad_zero_layers": g["zero_layers"],
                **runner.epoch_end(eval_batches),
                **extra,
            }
            entry["records"].append(record)
            if epoch == 1:
                entry["grad_norms"]["epoch_1"] = g
            if epoch == cfg.epochs:
                entry["grad_norms"]["end"] = g
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
            if on_epoch is not None:
                on_epoch(entry)
        entry["status"] = "complete"
        if on_model is not None:
            on_model(runner.model)
        return entry
    except (ValueError, FloatingPointError) as exc:
        if not _diverged(exc):
            raise
        entry.update(status="diverged", error=f"{type(exc).__name__}: {exc}")
        return entry
    finally:
        bar.close()
        runner.close()
