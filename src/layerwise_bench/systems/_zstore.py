"""Memory of the auxiliary-activation store at MNIST scale: the peak resident memory of a worker process that builds
the store from a forward pass over every image and trains decoupled steps, per storage option (float32/bfloat16,
in memory/memory-mapped)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..core._record import Record, save_report
from ._parallel import launch

__all__ = ["ZSTORE_OPTIONS", "run_zstore_benchmark"]

ZSTORE_OPTIONS: dict[str, dict[str, Any]] = {
    "float32, memory": {"dtype": "float32", "mmap": False},
    "bfloat16, memory": {"dtype": "bfloat16", "mmap": False},
    "bfloat16, memory-mapped": {"dtype": "bfloat16", "mmap": True},
    "float32, memory-mapped": {"dtype": "float32", "mmap": True},
}


def run_zstore_benchmark(
    out: str | Path,
    *,
    dataset: str = "mnist",
    data_dir: str | None = None,
    n: int | None = None,
    depth: int = 10,
    width: int = 1000,
    steps: int = 50,
    batch_size: int = 128,
    threads: int = 1,
    options: list[str] | None = None,
    command: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Peak resident memory per storage option; writes results.json and report.md to ``out``."""
    out = Path(out)
    config = {
        "dataset": dataset,
        "n": n,
        "depth": depth,
        "width": width,
        "steps": steps,
        "batch_size": batch_size,
        "threads": threads,
    }
    record = Record(out, "zstore", config, command=command, overwrite=overwrite, runs_key="options")
    results = record.results
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        for name in options or list(ZSTORE_OPTIONS):
            cfg = {**results["config"], **ZSTORE_OPTIONS[name], "data_dir": data_dir, "path": str(Path(tmp) / "z")}
            (res,), (peak,) = launch({**cfg, "worker": "zstore"}, Path(tmp))  # peak RSS of the worker process
            res["peak_rss_bytes"] = peak
            results["options"][name] = res
    c = results["config"]
    lines = [
        "# Auxiliary-activation store: memory",
        "",
        f"Command: `{command}`",
        "",
        f"{dataset}, {n or 'all'} examples, depth {depth} (so {depth - 1} hidden layers) × width {width}; the store "
        f"is built from a forward pass over every example, then {c['steps']} decoupled steps (batch "
        f"{batch_size}) read and write rows. Peak RSS is the whole process (Python, torch, the data set "
        "and the network included); memory-mapped z live in files and count only as far as their pages are "
        "resident.",
        "",
        "| storage | z size (GiB) | peak RSS of the process (GiB) | build from forward pass (s) | step (s) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["options"].items():
        lines.append(
            f"| {name} | {r['z_bytes'] / 2**30:.2f} | {r['peak_rss_bytes'] / 2**30:.2f} | {r['init_s']:.1f} | "
            f"{r['step_s']:.3f} |"
        )
    return record.finish(lambda results, out: save_report(out, lines))
