"""Step-time benchmarks, every entry's steps interleaved round-robin so that machine noise hits all alike (medians):
LocoProp on the deep autoencoder against Adam and the PyPI ``locoprop`` 0.1.0 port at equal inner steps T, and
registry methods on one batch of a workload, built as ``bench equal-time`` builds them."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.models import deep_autoencoder, sigmoid_cross_entropy

from ..core._harness import round_robin_times
from ..core._plotting import figure, method_colors, save_png
from ..core._record import Record, machine_lines, provenance, save_report
from ..core._tuned import prepare_methods
from ..methods._locoprop import _autoencoder_layers

__all__ = [
    "run_method_steptime",
    "run_steptime_benchmark",
    "write_method_steptime_report",
    "write_steptime_report",
]

Step = Callable[[], None]


def _layerwise_step(model: nn.Module, x: torch.Tensor, **kw: Any) -> Step:
    from layerwise.locoprop import LocoProp

    opt = LocoProp(model, layers=_autoencoder_layers(model), **kw)

    def step() -> None:
        opt.step(lambda: sigmoid_cross_entropy(model(x), x))

    return step


def _adam_step(model: nn.Module, x: torch.Tensor) -> Step:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        sigmoid_cross_entropy(model(x), x).backward()
        opt.step()

    return step


def _pypi_step(model: nn.Sequential, x: torch.Tensor, steps: int) -> Step:
    try:
        from locoprop import LocoLayer, LocopropTrainer
    except ImportError as exc:
        raise ImportError("the step-time comparison needs the PyPI port: pip install 'layerwise[compare]'") from exc
    pairs = _autoencoder_layers(model)
    acts = {"tanh": nn.Tanh(), "relu": nn.ReLU(), "identity": nn.Identity(), "sigmoid": nn.Sigmoid()}
    wrapped = nn.Sequential(*[LocoLayer(m, acts[a], implicit=(i == len(pairs) - 1)) for i, (m, a) in enumerate(pairs)])
    trainer = LocopropTrainer(wrapped, sigmoid_cross_entropy, local_iterations=steps, correction=0.0)

    def step() -> None:
        trainer.step(x, x)

    return step


def run_steptime_benchmark(
    out: str | Path,
    *,
    batch_size: int = 1000,
    steps: tuple[int, ...] = (1, 5, 10),
    repeats: int = 10,
    device: str | torch.device = "cpu",
    pypi: bool = True,
    chunks: tuple[int, ...] = (),
    command: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Median seconds per step of each entry; writes ``results.json``, ``report.md`` and a bar plot.
    ``chunks`` adds, for every T, the bfloat16 entry with its inner steps on slices of the batch
    (``LocoProp(inner_chunks=c)``)."""
    if any(c < 2 or c > batch_size or any(c > t for t in steps) for c in chunks):
        raise ValueError(
            f"Invalid chunks={list(chunks)}: each must be >= 2 (1 is the plain bf16 entry), <= batch_size="
            f"{batch_size} and <= every T in steps={list(steps)}."
        )
    device = torch.device(device)
    config: dict[str, Any] = {"batch_size": batch_size, "steps": list(steps), "repeats": repeats, "pypi": pypi}
    if chunks:
        config["chunks"] = list(chunks)
    record = Record(
        out, "locoprop-steptime", config, command=command, device=device, overwrite=overwrite, runs_key=None
    )
    x = torch.rand(batch_size, 784, generator=torch.Generator().manual_seed(0)).to(device)

    def model() -> nn.Sequential:
        return deep_autoencoder(generator=torch.Generator().manual_seed(0)).to(device)

    entries: dict[str, Step] = {"adam": _adam_step(model(), x)}
    for t in steps:
        entries[f"layerwise locoprop-m T={t}"] = _layerwise_step(model(), x, steps=t)
        entries[f"layerwise locoprop-m T={t} bf16"] = _layerwise_step(model(), x, steps=t, inner_dtype=torch.bfloat16)
        for c in chunks:
            entries[f"layerwise locoprop-m T={t} bf16 chunks={c}"] = _layerwise_step(
                model(), x, steps=t, inner_dtype=torch.bfloat16, inner_chunks=c
            )
        if pypi:
            entries[f"pypi locoprop T={t}"] = _pypi_step(model(), x, t)
    entries["layerwise locoprop-s-exact"] = _layerwise_step(
        model(), x, variant="s", solver="exact", damping=1e3, gamma=1e3, lr=1.0
    )
    entries["layerwise locoprop-m-precond T=3"] = _layerwise_step(
        model(), x, solver="precond", steps=3, damping=1e3, gamma=1e3, lr=1.0
    )
    times = round_robin_times(entries, device, repeats=repeats, warmup=2)
    med = {name: statistics.median(v) for name, v in times.items()}
    results = record.results
    results.update(
        batch_size=batch_size,
        repeats=repeats,
        median_step_s=med,
        vs_adam={n: v / med["adam"] for n, v in med.items()},
        times=times,
    )
    return record.finish(write_steptime_report)


def write_steptime_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.md`` and ``out/step_time.png`` for a step-time record."""
    path = save_report(out, _lines(results))
    _plot(results["median_step_s"], Path(out) / "step_time.png", "median seconds per step")
    return path


def _lines(results: dict[str, Any]) -> list[str]:
    med = results["median_step_s"]
    lines = [
        "# LocoProp step time, deep autoencoder",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Batch {results['batch_size']}, {results['repeats']} timed steps per entry (round-robin, after 2 warm-up "
        f"rounds), median. Device: {results['environment']}.",
        "",
        *machine_lines(results),
        "",
        "| entry | median step (s) | × Adam | × PyPI locoprop at same T |",
        "|---|---|---|---|",
    ]
    for name, v in med.items():
        inner = name.rsplit("T=", 1)[-1].split()[0] if "T=" in name else None
        ref = med.get(f"pypi locoprop T={inner}") if inner and name.startswith("layerwise locoprop-m T=") else None
        lines.append(f"| {name} | {v:.4f} | {v / med['adam']:.2f} | {f'{v / ref:.2f}' if ref else ''} |")
    if (results.get("environment") or {}).get("native_bf16") is False:
        lines += [
            "",
            "This CPU has no native bfloat16 products (no AVX512-BF16 or AMX): the bf16 entries time emulated "
            "products; the benchmark registry runs their float32 form on such a CPU (`Method.for_machine`).",
        ]
    return lines


def _plot(med: dict[str, float], path: Path, xlabel: str, scale: float = 1.0, **bar: Any) -> None:
    """A horizontal bar of each entry's median step, the first on top."""
    fig, (ax,) = figure(1, width=7.0)
    fig.set_figheight(0.4 * len(med) + 1.2)
    ax.barh(list(med), [v * scale for v in med.values()], **bar)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    save_png(fig, path, dpi=110)


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
    """Mean and median seconds per ``optimizer.step`` of each method on one batch of ``cfg``'s workload after
    ``warmup`` untimed rounds; writes ``results.json``, ``report.md`` and ``step_time.png``."""
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
    mean = {name: statistics.fmean(v) for name, v in times.items()}
    first = method_names[0]
    record.results.update(
        train_examples=len(data.train),
        test_examples=len(data.test),
        batch_size=len(x),
        median_step_s=med,
        mean_step_s=mean,
        vs_first={n: v / med[first] for n, v in med.items()},
        vs_first_mean={n: v / mean[first] for n, v in mean.items()},
        times=times,
        paths={m.name: m.path for m in methods if m.path},
    )
    for m in methods:
        record.runs[m.name] = {"median_step_s": med[m.name], "hparams": m.hparams, "lr": lrs[m.name][0]}
    return record.finish(write_method_steptime_report)


def write_method_steptime_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.md`` and ``out/step_time.png`` for a method step-time record."""
    cfg, med = results["config"], results["median_step_s"]
    mean = results.get("mean_step_s") or {n: statistics.fmean(v) for n, v in results["times"].items()}
    first = cfg["methods"][0]
    lines = [
        f"# Step time on {cfg.get('workload', 'autoencoder')} ({cfg.get('size', 'cpu')} size)",
        "",
        *provenance(results, "one fixed batch"),
        "",
        f"Batch {results['batch_size']}; {cfg['repeats']} timed steps per method, interleaved round-robin after "
        f"{cfg['warmup']} warm-up rounds. Each method is built by the registry as `bench equal-time` builds it. "
        "The mean is what a run pays where some steps cost more than others (an inverse refreshed every k steps, "
        "SOAP's eigenbases): take --repeats a multiple of k; the median shows the common step.",
        "",
        f"| method | mean step (ms) | × {first} (mean) | median step (ms) | × {first} (median) |",
        "|---|---|---|---|---|",
        *(
            f"| {n} | {mean[n] * 1e3:.1f} | {mean[n] / mean[first]:.2f} | {v * 1e3:.1f} | {v / med[first]:.2f} |"
            for n, v in med.items()
        ),
        *(
            ["", "Paths: " + "; ".join(f"{n}: {p}" for n, p in results["paths"].items())]
            if results.get("paths")
            else []
        ),
    ]
    path = save_report(out, lines)
    colors = method_colors(list(med))
    _plot(mean, Path(out) / "step_time.png", "mean step (ms)", 1e3, color=[colors[n] for n in med])
    return path
