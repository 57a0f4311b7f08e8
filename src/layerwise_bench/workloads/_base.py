"""A workload: what a benchmark trains (model, data, loss) and what it reports, taken by name from the run's
configuration (``RunConfig.workload``); it may refuse a method, with the reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BASELINES", "Data", "LabelledData", "Workload", "classify", "evaluate_classifier", "seeded"]


def seeded(make: Callable[[], nn.Module], generator: torch.Generator) -> nn.Module:
    """``make()`` with torch's global RNG seeded from ``generator`` (the global stream is left as it was), for
    modules that initialise from the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        return make()


class Data(Protocol):
    """What the harness needs of a workload's data: the training inputs (their length and device)."""

    @property
    def train(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class LabelledData:
    """Inputs and targets of a supervised workload; ``info`` describes the data (source, sizes, digest)."""

    train: torch.Tensor
    train_y: torch.Tensor
    test: torch.Tensor
    test_y: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


MODERN_LRS = {"adamw": 3e-3, "adam": 3e-3, "muon": 0.02, "soap": 3e-3, "kron": 1e-3, "schedule-free-adamw": 3e-3}
"""Learning-rate centres of today's optimizers on the supervised workloads."""

BASELINES = ("adamw", "nesterov", "muon", "soap", "kron", "schedule-free-adamw")
"""The methods every supervised workload runs by default, before its LocoProp recipes."""


@torch.no_grad()
def classify(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model``'s plain forward pass on ``(x, y)``, in batches."""
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch])
        loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return loss / len(x), correct / len(x)


@torch.inference_mode()
def evaluate_classifier(model: nn.Module, data: LabelledData, cfg: Any) -> dict[str, float]:
    """A classifier's ``train_loss``, and ``test_loss`` and ``test_accuracy`` unless ``cfg.evaluate_test`` is off."""
    train_loss, _ = classify(model, data.train, data.train_y)
    test_loss, test_acc = classify(model, data.test, data.test_y) if cfg.evaluate_test else (float("nan"),) * 2
    return {"train_loss": train_loss, "test_loss": test_loss, "test_accuracy": test_acc}


def labelled_batch(data: LabelledData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training inputs and targets at ``idx``: the batch of every supervised workload."""
    return data.train[idx], data.train_y[idx]


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Workload:
    """One benchmark task: its data (``load``, ``batch``), model (``build_model``), training ``loss_fn``, ``evaluate``
    (``train_loss``, ``test_loss`` and ``metrics``), the ``score`` that ranks methods, size presets, default rates and
    batch, ``refused`` methods, and the equal-time ``reference``."""

    name: str
    summary: str
    dataset: str
    load: Callable[..., Any]
    build_model: Callable[[Any, Any, torch.Generator], nn.Module]
    loss_fn: LossFn
    batch: Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    evaluate: Callable[[nn.Module, Any, Any], dict[str, float]]
    metrics: dict[str, str]
    score: str = "train_loss"
    batch_size: int = 1000
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    subset: dict[str, int | None] = field(default_factory=dict)
    default_lrs: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    reference: str = "adamw"
    reference_epochs: int = 1
    evaluate_in_equal_time: bool = True
    methods: tuple[str, ...] = ()

    def check_methods(self, names: list[str]) -> None:
        """Raise ValueError naming every method of ``names`` this workload refuses, and why, before any work."""
        bad = [f"{n!r}: {self.refused[n]}" for n in names if n in self.refused]
        if bad:
            raise ValueError(
                f"workload {self.name!r} cannot run {'; '.join(bad)}. Drop them from --methods "
                f"(runnable here: every registered method but {sorted(self.refused)})."
            )

    def size_options(self, size: str) -> dict[str, int]:
        """The model preset ``size``, with the valid names in the error."""
        if not self.sizes:
            return {}
        if size not in self.sizes:
            raise ValueError(f"Invalid size={size!r} for workload {self.name!r}: expected one of {sorted(self.sizes)}.")
        return self.sizes[size]

    def tuned_file(self) -> Path:
        """The tuned-values file shipped for this workload (may not exist: the centres are then the defaults)."""
        return Path(__file__).resolve().parent.parent / "tuned" / f"{self.name}.json"
