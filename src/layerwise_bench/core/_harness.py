"""Train one method on the deep autoencoder: epochs, evaluation, timing, checkpoints, resume."""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from layerwise.optim import default_warmup_epochs, warmup_linear_decay

from ..workloads import AutoencoderData, Workload, evaluate, get_workload, load_autoencoder_data
from ._io import atomic_torch_save, load_checkpoint
from ._method import Method

__all__ = [
    "AutoencoderConfig",
    "RunConfig",
    "AutoencoderData",
    "TrainingDiverged",
    "CheckpointMismatch",
    "load_autoencoder_data",
    "train_method",
    "evaluate",
    "progress_bar",
    "round_robin_times",
    "timed",
]

_DEFAULT_BATCH = {"mnist": 1000, "digits": 100}


def progress_bar(total: int | None, desc: str, progress: bool, initial: int = 0) -> Any:
    """The training progress bar every benchmark shows (``progress=False``: none); ``total`` in steps."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not progress, dynamic_ncols=True, leave=True)


class TrainingDiverged(RuntimeError):
    """A method produced a non-finite loss; the last good checkpoint is kept."""


class CheckpointMismatch(ValueError):
    """``--resume`` found a checkpoint written by a different configuration."""


@dataclass(frozen=True)
class AutoencoderConfig:
    """What a benchmark run trains on and for how long: ``workload`` and its ``size`` preset; ``None`` defaults take the
    workload's batch size, 5% of the schedule for warm-up; ``schedule_epochs`` (default ``epochs``) is the length of the
    warm-up/decay schedule."""

    dataset: str = "digits"
    epochs: int = 20
    subset: int | None = None
    batch_size: int | None = None
    seed: int = 0
    activation: str = "tanh"
    warmup_epochs: int | None = None
    evaluate_test: bool = True
    schedule_epochs: int | None = None
    workload: str = "autoencoder"
    size: str = "cpu"

    def __post_init__(self) -> None:
        get_workload(self.workload).size_options(self.size)  # validates both names
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"Invalid epochs={self.epochs!r}. Must be an integer >= 1 (e.g. --epochs 20).")
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 1):
            raise ValueError(f"Invalid subset={self.subset!r}. Must be an integer >= 1, or omitted for the whole set.")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"Invalid batch_size={self.batch_size!r}. Must be an integer >= 1.")
        if self.schedule_epochs is not None and (
            not isinstance(self.schedule_epochs, int) or self.schedule_epochs < self.epochs
        ):
            raise ValueError(
                f"Invalid schedule_epochs={self.schedule_epochs!r}. Must be an integer >= epochs="
                f"{self.epochs}, or omitted to schedule over the run's epochs."
            )
        warmup_linear_decay(self.total_epochs, self.warmup_epochs)  # validates warmup_epochs

    @property
    def total_epochs(self) -> int:
        """Length of the learning-rate schedule."""
        return self.schedule_epochs or self.epochs

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size:
            return self.batch_size
        if self.workload == "autoencoder":
            return _DEFAULT_BATCH.get(self.dataset, 1000)
        return get_workload(self.workload).batch_size

    @property
    def task(self) -> Workload:
        """The workload this configuration trains."""
        return get_workload(self.workload)

    def as_dict(self) -> dict[str, Any]:
        """The fields, as records and checkpoints store them: the autoencoder's omit ``workload`` and ``size``
        (its records predate workloads, and their configurations must still match on ``--resume``)."""
        out = asdict(self)
        if self.workload == "autoencoder" and self.size == "cpu":
            del out["workload"], out["size"]
        return out

    def resolved(self) -> dict[str, Any]:
        """The fields with every ``None`` default replaced by the value a run uses (for reports)."""
        return {
            **self.as_dict(),
            "batch_size": self.effective_batch_size,
            "schedule_epochs": self.total_epochs,
            "warmup_epochs": default_warmup_epochs(self.total_epochs)
            if self.warmup_epochs is None
            else self.warmup_epochs,
        }


RunConfig = AutoencoderConfig
"""What a benchmark run trains on and for how long, on any workload (the autoencoder's name is the older one)."""


def _signature(method: Method, lr: float, cfg: AutoencoderConfig) -> dict[str, Any]:
    return {"method": method.name, "lr": lr, "hparams": dict(method.hparams), "config": cfg.as_dict()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """The seconds ``fn()`` takes on ``device`` (CUDA synchronised before and after), and what it returns."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def round_robin_times(
    steps: Mapping[str, Callable[[], Any]],
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    block: dict[str, int] | None = None,
    warmup_block: int = 1,
    rotate: bool = False,
) -> dict[str, list[float]]:
    """Seconds per step of each entry: ``warmup`` untimed rounds, then ``repeats`` timed ones, the entries interleaved
    round-robin so that machine noise hits all alike (``rotate``: the order turns by one each round); an entry runs
    ``block[name]`` consecutive steps per round (warm-up rounds: ``warmup_block``), timed together."""
    names, times = list(steps), {name: list[float]() for name in steps}
    for r in range(warmup + repeats):
        for name in names[r % len(names) :] + names[: r % len(names)] if rotate else names:
            n = (block or {}).get(name, 1) if r >= warmup else warmup_block
            seconds, _ = timed(lambda: [steps[name]() for _ in range(n)], device)
            if r >= warmup:
                times[name].append(seconds / n)
    return times


def _seed_global_rngs(seed: int) -> None:
    """Seed what an optimizer may draw from without a generator of its own (PSGD-Kron's update coin)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _global_rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _at_evaluation_point(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Parameters at the point an optimizer reports: Schedule-Free's average (its ``eval()`` mode), else as is."""
    modes = getattr(optimizer, "eval", None), getattr(optimizer, "train", None)
    if not all(callable(m) for m in modes):
        yield
        return
    modes[0]()  # type: ignore[misc]
    try:
        yield
    finally:
        modes[1]()  # type: ignore[misc]


def _build(
    method: Method, lr: float, data: Any, cfg: AutoencoderConfig
) -> tuple[torch.nn.Module, torch.optim.Optimizer, _Schedules]:
    """The seeded model, the method's optimizer and its schedule, as every run of ``cfg`` starts."""
    generator = torch.Generator().manual_seed(cfg.seed)
    model = cfg.task.build_model(data, cfg, generator)
    _seed_global_rngs(cfg.seed)
    optimizer = method.build(model, lr, **method.hparams)
    schedule = warmup_linear_decay(cfg.total_epochs, cfg.warmup_epochs) if method.scheduled else _constant
    return model, optimizer, _Schedules(optimizer, schedule)


class _Schedules:
    """One ``LambdaLR`` for the optimizer and one for the first-order optimizer it holds for the parameters it
    does not train itself (LocoProp's ``other_optimizer``), so the schedule drives every rate of a step."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]) -> None:
        other = getattr(optimizer, "other_optimizer", None)
        self.all = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in (optimizer, other) if o is not None]

    @property
    def groups(self) -> list[tuple[dict[str, Any], float]]:
        """Every scheduled parameter group with its base rate."""
        return [(g, float(b)) for s in self.all for g, b in zip(s.optimizer.param_groups, s.base_lrs, strict=True)]

    def step(self) -> None:
        for s in self.all:
            s.step()

    def state_dict(self) -> dict[str, Any]:
        # one scheduler (every record before LocoProp's other_optimizer was scheduled): its own state, as it was
        return self.all[0].state_dict() if len(self.all) == 1 else {"schedules": [s.state_dict() for s in self.all]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        states = state["schedules"] if "schedules" in state else [state]
        for s, st in zip(self.all, states, strict=True):
            s.load_state_dict(st)


def train_method(
    method: Method,
    lr: float,
    data: Any,
    cfg: AutoencoderConfig,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    segment: int = 0,
    budget_s: float | None = None,
) -> list[dict[str, Any]]:
    """Train ``method`` on ``cfg``'s workload for ``cfg.epochs`` epochs, or ``budget_s`` seconds of training, and return
    one record per epoch (metrics, cumulative ``train_time`` of steps only, ``step_time_median``, ``segment``).

    Each epoch is checkpointed; ``resume`` continues to the same numbers as an uninterrupted run. With ``budget_s``
    the rate before each step is ``lr · (1 - t / budget_s)`` and the run stops (``stopped``) when the median of the
    last 16 step times no longer fits. Raises TrainingDiverged on a non-finite loss."""
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"Invalid budget_s={budget_s!r}: expected seconds > 0, or None to train cfg.epochs epochs.")
    device = data.train.device
    task = cfg.task
    model, optimizer, scheduler = _build(method, lr, data, cfg)
    records: list[dict[str, Any]] = []
    signature = _signature(method, lr, cfg)
    if budget_s is not None:  # cfg.epochs does not bound a run on the clock
        signature.update(budget_s=budget_s, config={**signature["config"], "epochs": None})
    if resume and checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint, map_location=device)
        if state["signature"] != signature:
            raise CheckpointMismatch(
                f"checkpoint {str(checkpoint)!r} was written by another configuration "
                f"({state['signature']}), not ({signature}). Resume with the same "
                "arguments, or start a new run in another --out directory."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        records = state["records"]
        _set_global_rng_state(state["rng"])
        optimizer_train = getattr(optimizer, "train", None)
        if callable(optimizer_train):
            optimizer_train()  # saved at the evaluation point; training resumes from the training point
        if records and records[-1].get("stopped"):
            return records  # a time-based run that already used its budget
    n, bs = len(data.train), cfg.effective_batch_size
    steps_per_epoch = math.ceil(n / bs)
    elapsed = records[-1]["train_time"] if records else 0.0
    recent: collections.deque[float] = collections.deque(maxlen=16)
    epochs = range(len(records), cfg.epochs) if budget_s is None else itertools.count(len(records))
    total = cfg.epochs * steps_per_epoch if budget_s is None else None
    bar = progress_bar(total, f"{method.name:>10}", progress, initial=len(records) * steps_per_epoch)
    try:
        for epoch in epochs:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)).to(device)
            times: list[float] = []
            used = 0.0  # this epoch's training time so far (sum(times), kept as it grows)
            stopped = False
            model.train()
            for step in range(steps_per_epoch):
                if budget_s is not None and method.scheduled:
                    _set_time_decay(scheduler.groups, (elapsed + used) / budget_s)
                if step == 0:
                    epoch_lr = optimizer.param_groups[0]["lr"]
                x, target = task.batch(data, order[step * bs : (step + 1) * bs])
                closure = method.closure(optimizer, model, task.loss_fn, x, target)
                try:
                    seconds, loss = timed(lambda: optimizer.step(closure), device)  # type: ignore[arg-type]
                except FloatingPointError as exc:
                    raise _diverged(method, epoch, step, checkpoint, str(exc)) from exc
                times.append(seconds)
                used += seconds
                loss_value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
                if not math.isfinite(loss_value):
                    raise _diverged(method, epoch, step, checkpoint, f"loss={loss_value}")
                bar.update(1)
                recent.append(times[-1])
                if budget_s is not None and elapsed + used + statistics.median(recent) > budget_s:
                    stopped = True
                    break
            elapsed += used
            if budget_s is None:
                scheduler.step()
            model.eval()
            with _at_evaluation_point(optimizer):
                metrics = task.evaluate(model, data, cfg)
                train_loss, test_loss = metrics["train_loss"], metrics["test_loss"]
                state = {
                    "signature": signature,
                    "model": {k: v.clone() for k, v in model.state_dict().items()},  # train() moves them
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _global_rng_state(),
                }
            if not math.isfinite(train_loss):
                raise _diverged(method, epoch, steps_per_epoch - 1, checkpoint, f"train loss={train_loss}")
            record = {
                "epoch": epoch + len(times) / steps_per_epoch if stopped else epoch + 1,
                "lr": epoch_lr,
                **metrics,
                "train_time": elapsed,
                "step_time_median": statistics.median(times),
                "steps": len(times),
                "segment": segment,  # which invocation trained this epoch (0: the first; n: the n-th resume)
            }
            if budget_s is not None:
                record["stopped"] = stopped
            records.append(record)
            bar.set_postfix(train=f"{train_loss:.2f}", test=f"{test_loss:.2f}")
            if checkpoint is not None:
                atomic_torch_save({**state, "records": records}, checkpoint)
            if on_epoch is not None:
                on_epoch(record)
            if stopped:
                break
    finally:
        bar.close()
    return records


def _constant(epoch: int) -> float:
    return 1.0


def _set_time_decay(groups: list[tuple[dict[str, Any], float]], used: float) -> None:
    """Each group's rate at the fraction ``used`` of a time budget: a linear decay from its base rate to 0."""
    for group, base in groups:
        group["lr"] = base * max(0.0, 1.0 - used)


def _diverged(method: Method, epoch: int, step: int, checkpoint: Path | None, what: str) -> TrainingDiverged:
    kept = (
        f"the checkpoint of the last complete epoch is kept at {str(checkpoint)!r}"
        if checkpoint is not None and checkpoint.is_file()
        else "no epoch had completed, so there is no checkpoint"
    )
    return TrainingDiverged(
        f"method {method.name!r} diverged at epoch {epoch + 1}, step {step + 1} ({what}); "
        f"{kept}. Lower its learning rate (--lr {method.name}=VALUE) or re-tune it "
        "(layerwise bench tune)."
    )
