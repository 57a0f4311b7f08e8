"""``layerwise bench depth``: plain deep MLPs (tanh, sigmoid) trained by backprop baselines, decoupled training
(auxiliary activations), LocoProp and deep supervision; training loss against epochs and wall-clock, per-layer
gradient norms at fixed points, the z store's memory and the feasibility gap.

Built on the public API only (:mod:`layerwise.decoupled`, :class:`~layerwise.LocoProp`, taps, local losses,
weightings, :func:`layerwise.backward`), in ordinary training loops (:mod:`._depth_train`). ``results.json``
is rewritten after every epoch; with ``resume`` every (depth, activation, method) already complete (or
diverged) is kept and the others are run again from scratch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from layerwise.data import load_dataset

from ..core._record import Record, check_names
from ._depth_methods import DEPTH_METHODS
from ._depth_model import ACTIVATIONS, INITS
from ._depth_report import write_depth_report
from ._depth_train import DepthConfig, DepthData, train_depth

__all__ = ["DepthConfig", "run_depth_benchmark"]


def _load(cfg: DepthConfig, data_dir: str | Path | None, device: torch.device, download: bool) -> DepthData:
    d = load_dataset(cfg.dataset, data_dir, download=download)
    n = len(d.train_x) if cfg.subset is None else min(cfg.subset, len(d.train_x))
    dtype = getattr(torch, cfg.dtype)
    return DepthData(
        torch.from_numpy(d.train_x[:n]).to(device, dtype),
        torch.from_numpy(d.train_y[:n]).long().to(device),
        torch.from_numpy(d.test_x).to(device, dtype),
        torch.from_numpy(d.test_y).long().to(device),
    )


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
    ``report.md`` and plots.

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
    data = _load(cfg, data_dir, device, download)
    results["train_examples"], results["test_examples"] = len(data.train_x), len(data.test_x)
    for depth in depths:
        for activation in activations:
            for method in methods:
                key = f"{depth}/{activation}/{method}"
                if not record.finished(key):
                    save = functools.partial(record.save_run, key)
                    save(train_depth(method, activation, depth, cfg, data, progress=progress, on_epoch=save))
            write_depth_report(results, out)  # after every (depth, activation): readable while the rest runs
    record.save()
    return results
