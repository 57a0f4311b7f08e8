"""A benchmark run: several methods, side by side, same data and epochs, one results file."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ._harness import AutoencoderConfig, AutoencoderData, TrainingDiverged, train_method
from ._io import atomic_write_json, read_json
from ._registry import get_method
from ._tuned import apply_tuned_hparams, load_tuned, resolve_lrs, tuned_path

__all__ = ["RESULTS_FILE", "run_autoencoder_benchmark", "environment"]

RESULTS_FILE = "results.json"


def environment(device: torch.device) -> dict[str, Any]:
    """Where the numbers were measured."""
    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_autoencoder_benchmark(
    method_names: list[str],
    cfg: AutoencoderConfig,
    data: AutoencoderData,
    out: Path,
    *,
    lr_overrides: dict[str, float] | None = None,
    tuned_file: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    sinks: list[Callable[[str, dict[str, Any]], None]] | None = None,
    keep_going: bool = False,
) -> dict[str, Any]:
    """Train every method in ``method_names`` on ``data`` and keep ``out/results.json`` current.

    The results file is rewritten (atomically) after every epoch of every method; checkpoints go
    to ``out/checkpoints/<method>.pt``; each ``sinks`` callable also gets ``(method, record)``
    (e.g. :class:`TensorBoardSink`). A diverging method stops the run with
    :class:`TrainingDiverged` after its status is recorded; with ``keep_going`` the run records
    it and goes on with the next method.
    """
    methods = [get_method(name) for name in method_names]  # unknown names fail before any work
    for m in methods:
        m.check_available()  # a missing optional package fails before any work
    lr_overrides = dict(lr_overrides or {})
    unknown = sorted(set(lr_overrides) - set(method_names))
    if unknown:
        raise ValueError(
            f"--lr names {unknown}, which are not among --methods {method_names}. "
            "Add them to --methods or drop them from --lr."
        )
    tuned_src = tuned_file if tuned_file is not None else tuned_path(cfg.dataset)
    tuned = load_tuned(tuned_src)
    methods = [apply_tuned_hparams(m, tuned) for m in methods]
    lrs = resolve_lrs(methods, lr_overrides, tuned)
    out = Path(out)
    results_path = out / RESULTS_FILE
    if results_path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"--out {str(out)!r} already holds a run ({RESULTS_FILE}). Pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out."
        )
    if resume and results_path.exists():
        results = read_json(results_path)
        if results.get("config") != asdict(cfg):
            raise ValueError(
                f"--resume: the run in {str(out)!r} used config {results.get('config')}, not "
                f"{asdict(cfg)}. Resume with the same arguments or choose another --out."
            )
    else:
        results = {"benchmark": "autoencoder", "config": asdict(cfg), "methods": {}}
    results.update(
        command=command, environment=environment(data.train.device), tuned_file=str(tuned_src) if tuned else None
    )
    for m in methods:
        lr, source = lrs[m.name]
        entry = results["methods"].setdefault(m.name, {})
        entry.update(summary=m.summary, lr=lr, lr_source=source, hparams=m.hparams, status="running")
        entry.setdefault("records", [])
        entry.pop("error", None)
        checkpoint = out / "checkpoints" / f"{m.name}.pt"
        if not resume:
            entry["records"] = []
            checkpoint.unlink(missing_ok=True)  # a fresh (or --overwrite) run never resumes a stale one

        def on_epoch(record: dict[str, Any], entry: dict[str, Any] = entry, name: str = m.name) -> None:
            entry["records"] = entry["records"][: record["epoch"] - 1] + [record]
            atomic_write_json(results, results_path)
            for sink in sinks or []:
                sink(name, record)

        try:
            entry["records"] = train_method(
                m, lr, data, cfg, checkpoint=checkpoint, resume=resume, progress=progress, on_epoch=on_epoch
            )
        except TrainingDiverged as exc:
            entry.update(status="diverged", error=str(exc))
            atomic_write_json(results, results_path)
            if not keep_going:
                raise
            continue
        entry["status"] = "complete"
        atomic_write_json(results, results_path)
    return results
