"""A workload: what a benchmark trains (model, data, loss) and what it reports, as data the harness runs.

The harness (``train_method``), the tuning sweep and the equal-time protocol take a workload by name from the
run's configuration (``RunConfig.workload``); a method registered once runs on every workload, or the
workload refuses it with the reason (AlgoPerf's workload API, reduced to what these benchmarks need).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["Data", "LabelledData", "Workload", "seeded"]


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


def labelled_batch(data: LabelledData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training inputs and targets at ``idx``: the batch of every supervised workload."""
    return data.train[idx], data.train_y[idx]


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Workload:
    """One benchmark task.

    Args:
        name: registry key (``--workload``).
        summary: one line for reports and ``--help``.
        dataset: the data set it reads (``RunConfig.dataset`` must name it).
        load: ``load(cfg, data_dir, download, device) -> data``.
        build_model: ``build_model(data, cfg, generator) -> nn.Module`` (seeded by ``generator``).
        loss_fn: the training loss ``loss_fn(model(x), target)``.
        batch: ``batch(data, indices) -> (x, target)``, one training batch.
        evaluate: ``evaluate(model, data, cfg) -> {metric: value}``, in inference mode; must hold
            ``train_loss`` and ``test_loss`` (NaN when ``cfg.evaluate_test`` is off) and the keys of ``metrics``.
        metrics: every metric the records carry, with its description (reports print them).
        score: the metric that ranks methods (lower is better).
        batch_size: default batch size.
        sizes: model presets by name (``RunConfig.size``); ``"cpu"`` sized for a few minutes on a 2-core CPU.
        subset: default number of training examples per size preset (None: all).
        default_lrs: learning-rate centres per method where the method's own default does not suit.
        refused: methods this workload cannot run, with the reason.
        reference: the equal-time reference method (its ``reference_epochs`` set the budget B).
        reference_epochs: default epochs of the reference.
        evaluate_in_equal_time: whether equal-time runs evaluate the test metrics (they are the score, or shown).
        methods: the methods the command line runs when ``--methods`` is not given.
    """

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
