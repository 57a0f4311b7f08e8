"""Hugging Face ``Trainer``: :class:`LayerwiseTrainer`, whose loss is a dict of terms under a weighting.

Callbacks cannot change the Trainer's loop, so this is a subclass (the way the Trainer's documentation asks
for a custom loss or optimizer). It overrides four methods and changes nothing else:

- ``compute_loss``: ``losses(model, inputs)`` gives the terms; :func:`layerwise.weighted_loss` weighs them
  (the weighting's update and, when due, the telemetry done there) and the Trainer's own backward
  (``accelerator.backward``, its accumulation and loss scaling) backpropagates the total;
- ``log``: each training log also carries the mean of every term since the last log (``loss/<term>``), the
  latest weights (``weight/<term>``) and the latest telemetry snapshot (``telemetry/...``), so every
  ``report_to`` logger and ``state.log_history`` get them;
- ``create_optimizer``: ``optimizer_factory(model)`` builds e.g. ``LocoProp`` or ``KFAC`` (refused under
  FSDP and DeepSpeed, which shard the parameters those optimizers read whole);
- ``_save_optimizer_and_scheduler`` / ``_load_optimizer_and_scheduler``: the weighting's and the
  telemetry's state go into the checkpoint folder (``layerwise.pt``), so ``train(resume_from_checkpoint=...)``
  continues the uninterrupted run.

A weighting with parameters of its own (``Uncertainty``, ``Naive``) gets a small Adam over them, stepped
right after the Trainer's optimizer. Install with ``pip install "layerwise[huggingface]"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._backward import weighted_loss
from ..locoprop import LocoProp
from ..telemetry import GradientTelemetry, Snapshot
from ..weighting import Weighting
from ._require import require

if TYPE_CHECKING:
    import transformers

    Trainer = transformers.Trainer
    TrainerCallback = transformers.TrainerCallback
else:
    _transformers = require("transformers", "huggingface", "layerwise.integrations.huggingface")
    Trainer, TrainerCallback = _transformers.Trainer, _transformers.TrainerCallback

__all__ = ["LayerwiseTrainer"]

STATE_NAME = "layerwise.pt"  # beside the Trainer's optimizer.pt in each checkpoint folder

Losses = Callable[[nn.Module, Mapping[str, Any]], Mapping[str, Tensor]]


class LayerwiseTrainer(Trainer):
    """A ``transformers.Trainer`` whose loss is ``Σ_k w_k L_k`` over the terms ``losses(model, inputs)`` returns.

    Args:
        *args: the ``Trainer``'s own.
        **kwargs: the ``Trainer``'s own.
        losses: ``losses(model, inputs) -> {name: scalar}``, the loss terms of a batch (e.g. the model's loss and
            an auxiliary loss on a hidden state). Default: the plain Trainer's loss.
        weighting: a ``layerwise`` weighting of those terms (default: all weights 1).
        telemetry: a :class:`~layerwise.GradientTelemetry` measured on the terms; its snapshots go to the logs.
        optimizer_factory: ``optimizer_factory(model) -> torch.optim.Optimizer`` (e.g. ``LocoProp`` or
            ``KFAC(likelihood="empirical")``); default: the Trainer's own (``args.optim``).
        weighting_lr: the learning rate of the weighting's own parameters (default ``args.learning_rate``).

    The evaluation loss is the unweighted sum of the terms. Gradient clipping (``args.max_grad_norm``) clips
    ``.grad``; LocoProp's layers step from the activation gradients they capture, which clipping does not
    change (warned once: set ``max_grad_norm=0``).
    """

    def __init__(
        self,
        *args: Any,
        losses: Losses | None = None,
        weighting: Weighting | None = None,
        telemetry: GradientTelemetry | None = None,
        optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
        weighting_lr: float | None = None,
        **kwargs: Any,
    ) -> None:
        _check(losses, weighting, telemetry, optimizer_factory)
        super().__init__(*args, **kwargs)
        own = [] if weighting is None else [p for p in weighting.parameters() if p.requires_grad]
        if own and self.args.fp16:
            raise ValueError(
                f"LayerwiseTrainer: {type(weighting).__name__} has parameters of its own, whose gradients fp16's "
                "loss scaling would leave scaled. Use bf16=True, or a weighting without parameters (Fixed, "
                "GradNorm, Usefulness)."
            )
        self.losses, self.weighting, self.telemetry = losses, weighting, telemetry
        self.optimizer_factory = optimizer_factory
        self.loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it by the accumulation steps
        self.weighting_optimizer = (
            torch.optim.Adam(own, lr=self.args.learning_rate if weighting_lr is None else weighting_lr) if own else None
        )
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self._snapshots: list[Snapshot] = []
        if telemetry is not None:
            telemetry.sinks.append(_Pending(self._snapshots))
        if self.weighting_optimizer is not None:
            self.add_callback(_StepWeighting(self.weighting_optimizer))

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Any:
        if self.losses is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        terms = self.losses(model, inputs)
        if not (model.training and torch.is_grad_enabled()):  # evaluation: no weighting update, no telemetry
            total = torch.stack(list(terms.values())).sum()
        else:
            params = [p for p in model.parameters() if p.requires_grad]
            total = weighted_loss(terms, self.weighting, params=params, telemetry=self.telemetry)
            for name, value in terms.items():
                value = value.detach()
                self._sums[name] = self._sums[name] + value if name in self._sums else value
            self._count += 1
        return (total, dict(terms)) if return_outputs else total

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: merge the terms, the weights and the telemetry
            if self._count:
                logs.update({f"loss/{k}": float(v) / self._count for k, v in self._sums.items()})
                self._sums, self._count = {}, 0
            if self.weighting is not None:
                logs.update({f"weight/{k}": v for k, v in self.weighting.current.items()})
            if self._snapshots:
                logs.update({f"telemetry/{k}": v for k, v in self._snapshots[-1].scalars().items()})
                self._snapshots.clear()
        super().log(logs, start_time)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            return super().create_optimizer(model)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise ValueError(
                "LayerwiseTrainer: optimizer_factory builds an optimizer that reads whole layers (LocoProp, "
                "K-FAC), but this run shards them (FSDP or DeepSpeed). Train with DDP (the default on several "
                "GPUs), or leave optimizer_factory out to use the Trainer's own optimizer."
            )
        if self.optimizer is not None:
            return self.optimizer
        target = self.model if model is None else model
        if target is None:
            raise ValueError("LayerwiseTrainer: optimizer_factory needs the model; pass model= to the trainer.")
        optimizer = self.optimizer_factory(target)
        if isinstance(optimizer, LocoProp) and self.args.max_grad_norm:
            warnings.warn(
                f"LayerwiseTrainer: max_grad_norm={self.args.max_grad_norm} clips .grad, but LocoProp's layers "
                "step from the activation gradients they capture, which clipping does not change (only its "
                "other_optimizer's parameters are clipped). Set max_grad_norm=0 to silence this.",
                UserWarning,
                stacklevel=2,
            )
        self.optimizer = optimizer
        return optimizer

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            torch.save(self._layerwise_state(), os.path.join(output_dir, STATE_NAME))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or not self._layerwise_state():
            return
        path = os.path.join(checkpoint, STATE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"LayerwiseTrainer: checkpoint {checkpoint!r} has no {STATE_NAME}, the weighting's and the "
                "telemetry's state this trainer needs to resume (it was saved by another trainer). Resume from a "
                "checkpoint LayerwiseTrainer wrote, or start without resume_from_checkpoint."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if self.weighting is not None:
            self.weighting.load_state_dict(state["weighting"])
        if self.telemetry is not None:
            self.telemetry.load_state_dict(state["telemetry"])
        if self.weighting_optimizer is not None:
            self.weighting_optimizer.load_state_dict(state["weighting_optimizer"])

    def _layerwise_state(self) -> dict[str, Any]:
        parts = {
            "weighting": self.weighting,
            "telemetry": self.telemetry,
            "weighting_optimizer": self.weighting_optimizer,
        }
        return {name: part.state_dict() for name, part in parts.items() if part is not None}


class _Pending:
    """The telemetry's sink: keeps the snapshots until the next training log."""

    def __init__(self, into: list[Snapshot]) -> None:
        self.into = into

    def write(self, snapshot: Snapshot) -> None:
        self.into.append(snapshot)

    def close(self) -> None:
        self.into.clear()


class _StepWeighting(TrainerCallback):
    """Step the weighting's own parameters right after the Trainer's optimizer, then zero their gradients."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def on_optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()


def _check(losses: object, weighting: object, telemetry: object, optimizer_factory: object) -> None:
    """Clear errors for misuse, before the Trainer is built."""
    for name, value, want in (
        ("losses", losses, "a function losses(model, inputs) -> {name: scalar loss}"),
        ("optimizer_factory", optimizer_factory, "a function optimizer_factory(model) -> torch.optim.Optimizer"),
    ):
        if value is not None and not callable(value):
            raise TypeError(f"LayerwiseTrainer: {name}= must be {want}, got {type(value).__name__}.")
    if weighting is not None and not isinstance(weighting, Weighting):
        raise TypeError(
            f"LayerwiseTrainer: weighting= must be a layerwise weighting (Fixed, GradNorm, Usefulness, Uncertainty, "
            f"Naive), got {type(weighting).__name__}."
        )
    if telemetry is not None and not isinstance(telemetry, GradientTelemetry):
        raise TypeError(
            f"LayerwiseTrainer: telemetry= must be a layerwise.GradientTelemetry, got {type(telemetry).__name__}."
        )
    if losses is None and (weighting is not None or telemetry is not None):
        raise ValueError(
            "LayerwiseTrainer: weighting= and telemetry= need the loss terms: pass losses=lambda model, inputs: "
            '{"main": ..., "aux": ...}.'
        )
