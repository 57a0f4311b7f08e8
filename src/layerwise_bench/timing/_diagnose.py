"""Where a LocoProp step loses, layer by layer: what its update does against the backprop step and where its time
goes, beside a first-order reference on the same batches.

Three phases on one workload, both methods built by the registry (as ``bench equal-time`` builds them) from the
same initial weights and fed the same batches: ``steps`` training steps with ``record_stats=True`` (per layer:
cosine and norm ratio of ΔW against −∇W L, the first-order decrease −⟨∇W L, ΔW⟩, the local residual left; both
methods' batch losses); ``window`` steps timed side by side, interleaved (mean and median: a solver that refreshes
its inverse every k steps costs its mean); ``window`` steps under ``torch.profiler`` for the share of each phase
(LocoProp's ``record_function`` regions) and of each layer's solve.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import profile

from layerwise.locoprop import LocoProp

from ..core._harness import timed
from ..core._plotting import figure, save_png
from ..core._record import Record, provenance, save_report
from ..core._tuned import prepare_methods

__all__ = ["PHASES", "run_locoprop_diagnosis", "write_diagnosis_report"]

#: LocoProp's profiler regions of one step, in order.
PHASES = ("forward", "backward", "covariance", "other_optimizer", "solve")


def _batches(n: int, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - batch + 1, batch):
            yield perm[i : i + batch]


def run_locoprop_diagnosis(
    method: str,
    cfg: Any,
    data: Any,
    out: str | Path,
    *,
    reference: str = "adamw",
    steps: int = 200,
    window: int = 20,
    lr_overrides: dict[str, float] | None = None,
    hparam_overrides: dict[str, dict[str, Any]] | None = None,
    command: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Diagnose the LocoProp registry ``method`` on ``cfg``'s workload against ``reference``; writes
    ``results.json``, ``report.md``, ``phases.png`` and ``layers.png`` in ``out``.

    Raises:
        ValueError: a method unknown or refused by the workload, ``method`` not a LocoProp method, or ``steps`` /
            ``window`` out of range.
    """
    if steps < 2 or window < 2:
        raise ValueError(f"Invalid steps={steps} or window={window}: expected both >= 2.")
    task = cfg.task
    names = [method, reference]
    methods, lrs, *_ = prepare_methods(
        names, cfg.dataset, lr_overrides=lr_overrides, hparam_overrides=hparam_overrides, workload=cfg.workload
    )
    device = data.train.device
    config = {**cfg.as_dict(), "method": method, "reference": reference, "steps": steps, "window": window}
    record = Record(out, "locoprop-diagnosis", config, command=command, device=device, overwrite=overwrite)
    opts, models = {}, {}
    for m in methods:
        models[m.name] = model = task.build_model(data, cfg, torch.Generator().manual_seed(cfg.seed))
        model.train()
        opts[m.name] = m.build(model, lrs[m.name][0], **m.hparams)
    opt = opts[method]
    if not isinstance(opt, LocoProp):
        raise ValueError(
            f"bench diagnose takes a LocoProp method; {method!r} builds {type(opt).__name__}. "
            "Pass e.g. --method locoprop-cnn (resnet-mnist) or locoprop-transformer (lm-bytes)."
        )
    batches = _batches(len(data.train), cfg.effective_batch_size, torch.Generator().manual_seed(cfg.seed))

    def closures() -> dict[str, Any]:
        x, target = task.batch(data, next(batches).to(device))
        return {m.name: m.closure(opts[m.name], models[m.name], task.loss_fn, x, target) for m in methods}

    layers = [name for name, _ in opt.layers]
    losses: dict[str, list[float]] = {n: [] for n in names}
    stats: dict[str, dict[str, list[float]]] = {
        k: {name: [] for name in layers} for k in ("cosine", "norm_ratio", "residual_ratio", "decrease")
    }
    opt.record_stats = True
    for _ in range(steps):
        for name, closure in closures().items():
            losses[name].append(float(opts[name].step(closure).detach()))
        for s in opt.step_stats:
            for k in stats:
                stats[k][s.layer].append(float(getattr(s, k)))
    opt.record_stats = False
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(window):
        for name, closure in closures().items():
            times[name].append(timed(functools.partial(opts[name].step, closure), device)[0])
    profiled = 0.0
    with profile() as prof:
        for _ in range(window):
            profiled += timed(functools.partial(opt.step, closures()[method]), device)[0]
    clock = "device_time_total" if device.type == "cuda" else "cpu_time_total"  # on a GPU: its kernels' time
    totals = {e.key: getattr(e, clock) / 1e3 / window for e in prof.key_averages()}  # ms per step, inclusive
    phases = {p: totals.get(f"LocoProp.{p}", 0.0) for p in PHASES}
    half = steps // 2
    decrease = {name: sum(v[half:]) for name, v in stats["decrease"].items()}
    record.results.update(
        train_examples=len(data.train),
        test_examples=len(data.test),
        batch_size=cfg.effective_batch_size,
        layers={
            name: {
                "parameters": sum(p.numel() for p in models[method].get_submodule(name).parameters()),
                "solve_ms": totals.get(f"LocoProp.layer.{name}", 0.0),
                **{k: statistics.median(stats[k][name][half:]) for k in ("cosine", "norm_ratio", "residual_ratio")},
                "decrease_share": decrease[name] / sum(decrease.values()) if sum(decrease.values()) else float("nan"),
            }
            for name in layers
        },
        phases_ms=phases,
        profiled_step_ms=1e3 * profiled / window,
        mean_step_ms={n: 1e3 * statistics.fmean(v) for n, v in times.items()},
        median_step_ms={n: 1e3 * statistics.median(v) for n, v in times.items()},
        losses=losses,
        stats=stats,
        coverage=opt.coverage.share,
        phase_clock=clock,
    )
    for m in methods:
        record.runs[m.name] = {"lr": lrs[m.name][0], "hparams": m.hparams, "summary": m.summary}
    return record.finish(write_diagnosis_report)


def _ratio(results: dict[str, Any], key: str) -> float:
    cfg = results["config"]
    return results[key][cfg["method"]] / results[key][cfg["reference"]]


def write_diagnosis_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.md``, ``out/phases.png`` and ``out/layers.png`` for a diagnosis record."""
    cfg, layers, phases = results["config"], results["layers"], results["phases_ms"]
    method, ref = cfg["method"], cfg["reference"]
    mean, med = results["mean_step_ms"], results["median_step_ms"]
    solve_total, half = sum(v["solve_ms"] for v in layers.values()), cfg["steps"] // 2
    unmarked = results["profiled_step_ms"] - sum(phases.values())
    lines = [
        f"# LocoProp diagnosis: {method} on {cfg['workload']} ({cfg['size']} size), against {ref}",
        "",
        *provenance(results, f"seed {cfg['seed']}"),
        "",
        f"Batch {results['batch_size']}; LocoProp trains {results['coverage']:.0%} of the parameters. "
        f"{cfg['steps']} steps from the same initial weights on the same batches, then {cfg['window']} steps of "
        "each timed side by side (interleaved), then "
        f"{cfg['window']} of {method} under torch.profiler.",
        "",
        "## Step time",
        "",
        f"| method | mean step (ms) | median step (ms) | batch loss, last {cfg['steps'] // 2} steps (mean) |",
        "|---|---|---|---|",
        *(
            f"| {n} | {mean[n]:.1f} | {med[n]:.1f} | {statistics.fmean(results['losses'][n][half:]):.4f} |"
            for n in (method, ref)
        ),
        "",
        f"{method} / {ref}: **{_ratio(results, 'mean_step_ms'):.2f}×** on the means (what a run pays), "
        f"{_ratio(results, 'median_step_ms'):.2f}× on the medians.",
        "",
        "## Where a step's time goes (profiled, ms per step"
        + ("; GPU kernel time within each region)" if results.get("phase_clock") == "device_time_total" else ")"),
        "",
        "| phase | ms | share of the profiled step |",
        "|---|---|---|",
        *(f"| {p} | {phases[p]:.1f} | {phases[p] / results['profiled_step_ms']:.0%} |" for p in PHASES),
        f"| unmarked (inputs prepared, checks) | {unmarked:.1f} | {unmarked / results['profiled_step_ms']:.0%} |",
        f"| profiled step (wall) | {results['profiled_step_ms']:.1f} | |",
        "",
        f"## Per layer (stats: medians over the last {cfg['steps'] // 2} steps)",
        "",
        "cos: cosine of ΔW with −∇W L (1 = the backprop direction); |ΔW|/|∇|: the update's size against the "
        "gradient's; residual: ‖f(W_new ŷ) − target‖ / ‖γ g‖ after the solve (0 = local target reached); "
        "decrease: the layer's share of the first-order loss decrease −Σ⟨∇W L, ΔW⟩; solve: the layer's time in the "
        "solve (its local gradients and updates; the covariance is counted in its own phase above).",
        "",
        "| layer | parameters | cos | abs(ΔW)/abs(∇) | residual | decrease share | solve (ms) | solve share |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {v['parameters']:,} | {v['cosine']:.2f} | {v['norm_ratio']:.3g} | {v['residual_ratio']:.2f} | "
            f"{v['decrease_share']:.1%} | {v['solve_ms']:.2f} | {v['solve_ms'] / (solve_total or 1):.0%} |"
            for n, v in layers.items()
        ),
    ]
    path = save_report(out, lines)
    fig, (ax,) = figure(1, width=7.0)
    left = 0.0
    for p in PHASES:
        ax.barh(method, phases[p], left=left, label=p)
        left += phases[p]
    ax.barh(f"{ref} (timed)", mean[ref], color="grey", label=f"{ref} step")
    ax.set(xlabel="ms per step")
    ax.legend(fontsize=7)
    save_png(fig, Path(out) / "phases.png")
    fig, axes = figure(3, width=12.0)
    names = list(layers)
    panels = (("cosine", "cos(ΔW, −∇W L)"), ("residual_ratio", "residual left"), ("solve_ms", "solve ms / step"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.barh(names, [layers[n][key] for n in names])
        ax.invert_yaxis()
        ax.set(xlabel=label)
        ax.tick_params(axis="y", labelsize=6)
    save_png(fig, Path(out) / "layers.png")
    return path
