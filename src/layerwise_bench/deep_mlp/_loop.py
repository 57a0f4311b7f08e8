"""What the deep-MLP benchmarks share: their data, the one training loop of a run, and filling a record."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerwise.data import load_dataset

from ..core._harness import progress_bar
from ..core._record import Record
from ..workloads._base import classify as evaluate

__all__ = ["MLPData", "Trial", "evaluate", "load_data", "supervised_losses", "train_epochs", "train_into"]


@dataclass
class MLPData:
    """Training tensors (rows are the dataset indices the decoupled store is keyed by) and the test set."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def num_classes(self) -> int:
        return int(max(int(self.train_y.max()), int(self.test_y.max()))) + 1


def load_data(cfg: Any, data_dir: str | Path | None, device: torch.device, download: bool) -> MLPData:
    """``cfg.dataset``'s first ``cfg.subset`` training examples and its test set, inputs in ``cfg.dtype``."""
    d = load_dataset(cfg.dataset, data_dir, download=download)
    n = len(d.train_x) if cfg.subset is None else min(cfg.subset, len(d.train_x))
    dtype = getattr(torch, getattr(cfg, "dtype", "float32"))
    return MLPData(
        torch.from_numpy(d.train_x[:n]).to(device, dtype),
        torch.from_numpy(d.train_y[:n]).long().to(device),
        torch.from_numpy(d.test_x).to(device, dtype),
        torch.from_numpy(d.test_y).long().to(device),
    )


def supervised_losses(model: nn.Module, taps: Any, heads: nn.ModuleDict, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Deep supervision's terms: ``{"main": CE(model(x), y), <head>: head(its tapped activation, y), ...}``."""
    out = {"main": F.cross_entropy(model(x), y)}
    if taps is not None:
        out.update({k: head(taps[k], y) for k, head in heads.items()})
    return out


class Trial:
    """One run driven by :func:`train_epochs`: ``entry`` is what it records; the hooks default to nothing."""

    entry: dict[str, Any]

    def start(self) -> None:
        """Work before the first step (timed)."""

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        """One update; returns the value of the objective it descends on this batch."""
        raise NotImplementedError

    def after_first_step(self) -> None:
        """A measurement after the very first step (not timed)."""

    def finish(self) -> dict[str, Any]:
        """Work after the last epoch's steps (timed); returns what to add to the last epoch's record."""
        return {}

    def end_epoch(self, epoch: int, objective: float) -> dict[str, Any]:
        """The epoch's record after ``epoch`` and ``train_time`` (not timed); ``objective``: the batches' mean."""
        raise NotImplementedError

    def complete(self) -> None:
        """Entries to add when every epoch is done."""

    def diverged(self, exc: Exception, epoch: int, step: int) -> dict[str, Any] | None:
        """The entries recording ``exc`` as a divergence, or None to raise it."""
        return None

    def close(self) -> None:
        """Release hooks."""


def train_epochs(
    trial: Trial,
    data: MLPData,
    cfg: Any,
    seed: int,
    desc: str,
    progress: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Train ``trial`` for ``cfg.epochs`` epochs of shuffled batches of ``cfg.batch_size`` (the order seeded by
    ``seed``); returns its entry, complete or diverged. ``train_time`` counts the steps, ``start`` and ``finish``."""
    epochs, batch_size = cfg.epochs, cfg.batch_size
    x, y, entry = data.train_x, data.train_y, trial.entry
    n, steps = len(x), math.ceil(len(x) / batch_size)
    gen = torch.Generator().manual_seed(seed)
    bar = progress_bar(epochs * steps, desc, progress)
    epoch = b = 0
    try:
        t0 = time.perf_counter()
        trial.start()
        train_time = time.perf_counter() - t0
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=gen).to(x.device)
            total, t0 = 0.0, time.perf_counter()
            for b in range(steps):
                idx = order[b * batch_size : (b + 1) * batch_size]
                value = trial.step(x[idx], y[idx], idx)
                if not math.isfinite(value):
                    raise FloatingPointError(f"the training objective is {value}")
                total += value
                if epoch == 1 and b == 0:
                    train_time += time.perf_counter() - t0
                    trial.after_first_step()
                    t0 = time.perf_counter()
                bar.update(1)
            extra = trial.finish() if epoch == epochs else {}
            train_time += time.perf_counter() - t0
            entry["records"].append(
                {"epoch": epoch, "train_time": train_time, **trial.end_epoch(epoch, total / steps), **extra}
            )
            bar.set_postfix(test_acc=f"{entry['records'][-1]['test_acc']:.3f}")
            if on_epoch is not None:
                on_epoch(entry)
        trial.complete()
        entry["status"] = "complete"
    except (ValueError, FloatingPointError) as exc:
        update = trial.diverged(exc, epoch, b + 1)
        if update is None:
            raise
        entry.update(status="diverged", **update)
    finally:
        bar.close()
        trial.close()
    return entry


def train_into(
    record: Record, key: str, trial: Callable[[], Trial], data: MLPData, cfg: Any, seed: int, progress: bool
) -> None:
    """Train ``trial()`` as run ``key`` unless a previous call finished it; the record is saved after every epoch."""
    if not record.finished(key):
        save = functools.partial(record.save_run, key)
        save(train_epochs(trial(), data, cfg, seed, key, progress, save))
