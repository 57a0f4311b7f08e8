"""Step time of registry methods on a workload: every method built by the registry (as ``bench equal-time``
builds it, the machine's fallback applied), one fixed training batch, the steps of all methods interleaved
round-robin so machine noise hits every method alike; medians, and each as a multiple of the first method's."""

from __future__ import annotations

import functools
import statistics
from pathlib import Path
from typing import Any

import torch

from ..core._harness import round_robin_times
from ..core._plotting import figure, method_colors, save_png
from ..core._record import Record, provenance, save_report
from ..core._tuned import prepare_methods

__all__ = ["run_method_steptime", "write_method_steptime_report"]


def run_method_steptime(
    method_names: list[str],
    cfg: Any,
    data: Any,
    out: str | Path,
    *,
    repeats: int = 20,
    warmup: int = 3,
    command: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Median seconds per ``optimizer.step`` of each method on one batch of ``cfg``'s workload after ``warmup`` untimed
    rounds; writes ``results.json``, ``report.md`` and ``step_time.png``."""
    if repeats < 3 or warmup < 1:
        raise ValueError(f"Invalid repeats={repeats} or warmup={warmup}: expected repeats >= 3 and warmup >= 1.")
    task = cfg.task
    methods, lrs, *_ = prepare_methods(method_names, cfg.dataset, workload=cfg.workload)
    device = data.train.device
    config = {**cfg.as_dict(), "methods": method_names, "repeats": repeats, "warmup": warmup}
    record = Record(out, "method-steptime", config, command=command, device=device, overwrite=overwrite)
    x, target = task.batch(data, torch.arange(min(cfg.effective_batch_size, len(data.train)), device=device))
    steps = {}
    for m in methods:
        model = task.build_model(data, cfg, torch.Generator().manual_seed(cfg.seed))
        model.train()
        opt = m.build(model, lrs[m.name][0], **m.hparams)
        steps[m.name] = functools.partial(opt.step, m.closure(opt, model, task.loss_fn, x, target))
    times = round_robin_times(steps, device, repeats=repeats, warmup=warmup)
    med = {name: statistics.median(v) for name, v in times.items()}
    first = method_names[0]
    record.results.update(
        train_examples=len(data.train),
        test_examples=len(data.test),
        batch_size=len(x),
        median_step_s=med,
        vs_first={n: v / med[first] for n, v in med.items()},
        times=times,
        paths={m.name: m.path for m in methods if m.path},
    )
    for m in methods:
        record.runs[m.name] = {"median_step_s": med[m.name], "hparams": m.hparams, "lr": lrs[m.name][0]}
    record.save()
    write_method_steptime_report(record.results, out)
    return record.results


def write_method_steptime_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.md`` and ``out/step_time.png`` for a method step-time record."""
    cfg, med = results["config"], results["median_step_s"]
    first = cfg["methods"][0]
    lines = [
        f"# Step time on {cfg.get('workload', 'autoencoder')} ({cfg.get('size', 'cpu')} size)",
        "",
        *provenance(results, "one fixed batch"),
        "",
        f"Batch {results['batch_size']}; {cfg['repeats']} timed steps per method, interleaved round-robin after "
        f"{cfg['warmup']} warm-up rounds; median. Each method is built by the registry as `bench equal-time` "
        "builds it.",
        "",
        f"| method | median step (ms) | × {first} |",
        "|---|---|---|",
        *(f"| {n} | {v * 1e3:.1f} | {v / med[first]:.2f} |" for n, v in med.items()),
        *(
            ["", "Paths: " + "; ".join(f"{n}: {p}" for n, p in results["paths"].items())]
            if results.get("paths")
            else []
        ),
    ]
    path = save_report(out, lines)
    fig, (ax,) = figure(1, width=7.0)
    fig.set_figheight(0.4 * len(med) + 1.2)
    colors = method_colors(list(med))
    ax.barh(list(med), [v * 1e3 for v in med.values()], color=[colors[n] for n in med])
    ax.invert_yaxis()
    ax.set(xlabel="median step (ms)")
    save_png(fig, Path(out) / "step_time.png")
    return path
