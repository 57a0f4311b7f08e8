"""``layerwise bench depth``: plain deep MLPs (tanh, sigmoid) trained by backprop baselines, decoupled training,
LocoProp and deep supervision; training loss against epochs and wall-clock, per-layer gradient norms at fixed
points, the z store's memory and the feasibility gap. Built on the public API only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..core._record import Record, check_names
from ._depth_methods import DEPTH_METHODS, make_runner
from ._depth_model import ACTIVATIONS, INITS
from ._depth_report import write_depth_report
from ._loop import MLPData, load_data, train_epochs, train_into

__all__ = ["DepthConfig", "run_depth_benchmark", "train_depth"]


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


def train_depth(
    method: str,
    activation: str,
    depth: int,
    cfg: DepthConfig,
    data: MLPData,
    *,
    progress: bool = False,
    on_model: Callable[[torch.nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train ``method`` on a plain MLP of ``depth`` hidden layers; returns its entry (records, gradient norms).
    ``on_model`` receives the trained plain network when training completes."""
    runner = make_runner(method, activation, depth, cfg, data, on_model)
    return train_epochs(runner, data, cfg, cfg.seed, f"d{depth}/{activation}/{method}", progress, None)


def run_depth_benchmark(
    out: str | Path,
    *,
    depths: Sequence[int] = (10, 20, 50),
    activations: Sequence[str] = ("tanh", "sigmoid"),
    methods: Sequence[str] = tuple(DEPTH_METHODS),
    cfg: DepthConfig | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Train every (depth, activation, method) in that order; keep ``out/results.json`` current; write
    ``report.md`` and plots after every (depth, activation).

    Raises:
        ValueError: unknown method or activation, a depth < 1, or ``resume`` with a different configuration.
        FileExistsError: ``out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    cfg = cfg or DepthConfig()
    check_names("methods", methods, DEPTH_METHODS)
    check_names("activations", activations, ACTIVATIONS)
    if not depths or any(d < 1 for d in depths):
        raise ValueError(f"Invalid depths {list(depths)}: expected hidden-layer counts >= 1, e.g. 10,20,50.")
    if cfg.dtype not in ("float32", "float64"):
        raise ValueError(f"Invalid dtype {cfg.dtype!r}: expected 'float32' or 'float64'.")
    if cfg.decoupled_init not in INITS or cfg.locoprop_init not in INITS:
        raise ValueError(f"Invalid init {cfg.decoupled_init!r}/{cfg.locoprop_init!r}: expected one of {list(INITS)}.")
    device = torch.device(device)
    record = Record(out, "depth", asdict(cfg), command=command, device=device, resume=resume, overwrite=overwrite)
    results = record.results
    # a resumed record may cover more (depth, activation, method) than this call: keep the union
    methods_all = [m for m in DEPTH_METHODS if m in methods or m in results.get("methods", ())]
    results.update(
        methods=methods_all,
        depths=sorted(set(depths) | set(results.get("depths", ()))),
        activations=[a for a in ACTIVATIONS if a in activations or a in results.get("activations", ())],
        descriptions={m: DEPTH_METHODS[m].describe(**asdict(cfg)) for m in methods_all},
    )
    data = load_data(cfg, data_dir, device, download)
    results["train_examples"], results["test_examples"] = len(data.train_x), len(data.test_x)
    for depth in depths:
        for act in activations:
            for m in methods:
                key = f"{depth}/{act}/{m}"
                train_into(record, key, lambda: make_runner(m, act, depth, cfg, data), data, cfg, cfg.seed, progress)
            write_depth_report(results, out)  # after every (depth, activation): readable while the rest runs
    record.save()
    return results
