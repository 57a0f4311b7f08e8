"""Layer-parallel decoupled training, measured: one epoch with 1 process against 2 processes (one stage each),
1 thread per process, next to 1 process with 2 threads and to backprop. Configurations run as separate
processes, interleaved round-robin over repeats; medians reported."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..core._record import Record, machine_lines, save_report

__all__ = ["PARALLEL_CONFIGS", "launch", "run_parallel_benchmark", "write_parallel_report"]

# name: (method, processes, threads per process)
PARALLEL_CONFIGS: dict[str, tuple[str, int, int]] = {
    "decoupled, 1 process x 1 thread": ("decoupled", 1, 1),
    "decoupled, 2 processes x 1 thread (layer parallel)": ("decoupled", 2, 1),
    "decoupled, 1 process x 2 threads": ("decoupled", 1, 2),
    "backprop (Adam), 1 process x 1 thread": ("backprop", 1, 1),
    "backprop (Adam), 1 process x 2 threads": ("backprop", 1, 2),
}


def launch(cfg: dict[str, Any], workdir: Path, procs: int = 1) -> tuple[list[dict[str, Any]], list[int]]:
    """Run the worker for ``cfg`` in ``procs`` processes (the ranks of one gloo group when several), each with
    ``cfg["threads"]`` threads; returns each rank's result and each process's peak resident memory in bytes."""
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"]), "MKL_NUM_THREADS": str(cfg["threads"])}
    outs = [workdir / f"out{r}.json" for r in range(procs)]
    for path in [*outs, workdir / "rendezvous"]:
        path.unlink(missing_ok=True)
    ranks = [[str(r), str(procs), f"file://{workdir / 'rendezvous'}"] if procs > 1 else [] for r in range(procs)]
    cmd = [sys.executable, "-m", "layerwise_bench.systems._worker", json.dumps(cfg)]
    runs = [subprocess.Popen([*cmd, str(out), *rank], env=env) for out, rank in zip(outs, ranks, strict=True)]
    usages = []
    for p in runs:
        _, status, usage = os.wait4(p.pid, 0)  # its own peak RSS (Linux: kilobytes)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen
        usages.append(usage.ru_maxrss * 1024)
    if any(p.returncode for p in runs):
        raise RuntimeError(f"a benchmark process failed (exit codes {[p.returncode for p in runs]}) for {cfg}")
    return [json.loads(out.read_text()) for out in outs], usages


def run_parallel_benchmark(
    out: str | Path,
    *,
    dataset: str = "mnist",
    data_dir: str | None = None,
    depth: int = 10,
    width: int = 1000,
    subset: int | None = 20000,
    batch_size: int = 128,
    z_steps: int = 1,
    lr: float = 1e-3,
    repeats: int = 3,
    seed: int = 0,
    configs: list[str] | None = None,
    command: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Time one training epoch per configuration (see :data:`PARALLEL_CONFIGS`); write results.json and report.md
    to ``out``."""
    names = configs or list(PARALLEL_CONFIGS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    base = {
        "dataset": dataset,
        "data_dir": data_dir,
        "depth": depth,
        "width": width,
        "subset": subset,
        "batch_size": batch_size,
        "z_steps": z_steps,
        "lr": lr,
        "seed": seed,
    }
    record = Record(out, "layer-parallel", base, command=command, overwrite=overwrite)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name in names:
                method, procs, threads = PARALLEL_CONFIGS[name]
                res, _ = launch({**base, "worker": "parallel", "method": method, "threads": threads}, Path(tmp), procs)
                runs[name].append({"epoch_s": max(r["epoch_s"] for r in res), "ranks": res})
    summary = {
        n: {
            "median_epoch_s": statistics.median(r["epoch_s"] for r in rs),
            "epoch_s": [r["epoch_s"] for r in rs],
            "train_loss": rs[-1]["ranks"][0]["train_loss"],
            "train_acc": rs[-1]["ranks"][0]["train_acc"],
        }
        for n, rs in runs.items()
    }
    record.results.update(repeats=repeats, runs=runs, summary=summary, load_before=load_before)
    return record.finish(write_parallel_report)


def write_parallel_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.md`` for a layer-parallel record."""
    s, c = results["summary"], results["config"]
    ref = "decoupled, 1 process x 1 thread"
    lines = [
        "# Layer-parallel decoupled training: epoch time",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Plain tanh MLP, depth {c['depth']}, width {c['width']}, {c['dataset']} "
        f"({c['subset'] or 'all'} training examples), batch {c['batch_size']}, one epoch per run, "
        f"{results['repeats']} repeats interleaved round-robin, medians. Environment: "
        f"{json.dumps(results['environment'])}.",
        "",
        *machine_lines(results),
        "",
        "| configuration | median epoch (s) | ÷ 1 process × 1 thread | train loss after the epoch | train acc |",
        "|---|---|---|---|---|",
    ]
    for name, v in s.items():
        ratio = v["median_epoch_s"] / s[ref]["median_epoch_s"] if ref in s else float("nan")
        lines.append(
            f"| {name} | {v['median_epoch_s']:.2f} | {ratio:.3f} | {v['train_loss']:.4f} | {v['train_acc']:.4f} |"
        )
    return save_report(out, lines)
