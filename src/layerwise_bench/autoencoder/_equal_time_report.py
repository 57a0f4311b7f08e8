"""Report of ``layerwise bench equal-time``: methods ranked by the loss reached within each budget, time to
target losses, and the loss-against-time curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core._plotting import figure, method_colors, save_png
from ..core._record import provenance, save_report
from ..core._slow_runs import run_step_time

__all__ = ["chosen_run", "measured_epoch_time", "run_key", "write_equal_time_report"]


def run_key(k: float, name: str, factor: float) -> str:
    """The key of ``name``'s run within ``k``·B at ``factor`` times its tuned rate (factor 1: no suffix)."""
    return f"{k:g}B/{name}" if factor == 1 else f"{k:g}B/{name}@{factor:g}"


def chosen_run(results: dict[str, Any], k: float, name: str) -> dict[str, Any] | None:
    """The run of ``name`` within ``k``·B that the record scores: the chosen learning-rate factor's run (the
    only run when the record has no grid)."""
    choice = (results.get("chosen") or {}).get(f"{k:g}B/{name}")
    return results["runs"].get(run_key(k, name, choice["factor"] if choice else 1.0))


def measured_epoch_time(entry: dict[str, Any]) -> float | None:
    """Training seconds per epoch of a run, as it trained: its training time over the epochs it ran (the last
    one possibly partial). None for a run without records."""
    recs = entry.get("records") or []
    return float(recs[-1]["train_time"] / recs[-1]["epoch"]) if recs else None


_ON_THE_CLOCK = (
    "Each method trains on the clock within k·B: before each step its rate is lr·(1 − t/(k·B)), t its training "
    "time so far (Schedule-Free keeps its constant rate), and it stops when its next step would no longer fit. Its "
    "score is the training loss where it stopped (training steps only, no evaluation); 'over by' is how far its "
    "training time passed k·B (at most about one step: one of Shampoo's, SOAP's or K-FAC's periodic expensive "
    "steps, if that came last; the rate is then about 0)."
)
_FITTED_EPOCHS = (  # records made before the runs went on the clock
    "Each method ran the epochs its estimated epoch time allowed within k·B, with a schedule fitted to those "
    "epochs; its score is the training loss after the last epoch that ended within k·B (training steps only, no "
    "evaluation)."
)


def _time_to(records: list[dict[str, Any]], target: float, metric: str = "train_loss") -> float | None:
    for r in records:
        if r.get(metric, math.inf) <= target:
            return float(r["train_time"])
    return None


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def write_equal_time_report(results: dict[str, Any], out: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and ``loss_vs_time.png``) for an equal-time record."""
    out = Path(out)
    cfg, budget = results["config"], results.get("budget_s")
    ref = cfg["reference"]
    names = list(results["lrs"])
    grid = [float(f) for f in cfg.get("lr_factors") or [1.0]]
    chosen_from = cfg.get("lrs_from")
    runs = {f"{k:g}B/{n}": r for k in cfg["multiples"] for n in names if (r := chosen_run(results, k, n)) is not None}
    metric = results.get("score", "train_loss")  # records before workloads: the autoencoder's training loss
    shown = [m for m in results.get("metrics", {}) if m != metric]
    task = cfg.get("workload", "autoencoder")
    lines = [
        f"# Equal wall-clock: {'deep autoencoder' if task == 'autoencoder' else task} ({cfg['dataset']})",
        "",
        *provenance(results, f"seed {cfg['seed']}"),
        "",
        *(
            [
                f"Score: `{metric}`, {results['metrics'][metric]} (lower is better)."
                + ("".join(f" Also shown: `{m}`, {results['metrics'][m]}." for m in shown)),
                "",
            ]
            if "metrics" in results
            else []
        ),
        f"Budget B = the training time of `{ref}` for {cfg['reference_epochs']} epochs in this run: "
        f"**{_fmt(budget, 1)} s**. "
        + (
            _ON_THE_CLOCK.replace("the training loss where", f"its `{metric}` where")
            if cfg.get("schedule") == "time"
            else _FITTED_EPOCHS
        )
        + (
            f" Learning rates tuned on each budget: every method ran {', '.join(f'{f:g}' for f in grid)} × its "
            + (
                "10-epoch tuned rate"
                if task == "autoencoder"
                else "centre rate (its tuned rate, else the workload's default)"
            )
            + ", and the best within the budget is scored; a best on the grid's edge extended the "
            "grid one step further out, up to twice ('edge': the best is still on the edge of the factors run)."
            if len(grid) > 1
            else ""
        )
        + (f" Learning rates as chosen on each budget in `{chosen_from}`." if chosen_from else ""),
        "",
    ]
    for k in cfg["multiples"]:
        rows = [(v["method"], v) for key, v in runs.items() if key.startswith(f"{k:g}B/")]
        scored = sorted(
            rows,
            key=lambda r: (r[1].get("within") or {}).get(metric, math.inf),
        )
        extra_head = "".join(f" {m} |" for m in shown)
        lines += [
            f"## Within {k:g}·B = {_fmt(k * budget if budget else None, 1)} s",
            "",
            f"| rank | method | lr | epochs run | epoch time (s) | {'loss' if metric == 'train_loss' else metric} "
            "within budget |"
            + extra_head
            + " time used (s) | over by (s) | status |"
            + (" loss at each lr factor |" if len(grid) > 1 else ""),
            "|---|---|---|---|---|---|" + "---|" * len(shown) + "---|---|---|" + ("---|" if len(grid) > 1 else ""),
        ]
        digits = 2 if task == "autoencoder" else 4  # the autoencoder's losses are tens of nats
        for i, (name, v) in enumerate(scored, 1):
            within = v.get("within") or {}
            lr = v.get("lr", results["lrs"][name]["lr"])
            edge = " (edge)" if (results.get("chosen") or {}).get(f"{k:g}B/{name}", {}).get("edge") else ""
            at = sorted(  # the grid and any factor it was extended by past an edge
                (
                    (float(e.get("lr_factor", 1.0)), e.get("within") or {})
                    for key, e in results["runs"].items()
                    if key.startswith(f"{k:g}B/") and e.get("method") == name
                ),
                key=lambda t: t[0],
            )
            grid_cell = (
                " " + ", ".join(f"{f:g}: {_fmt(w.get(metric), digits)}" for f, w in at) + " |" if len(grid) > 1 else ""
            )
            lines.append(
                f"| {i} | {name} | {lr:.3g}{edge} | {_fmt(v.get('epochs'))} | "
                f"{_fmt(measured_epoch_time(v), 2)} | {_fmt(within.get(metric), digits)} |"
                + "".join(f" {_fmt(within.get(m), 4)} |" for m in shown)
                + f" {_fmt(within.get('train_time'), 1)} | {_fmt(v.get('over_s'), 2)} |"
                + f" {_status(results, k, name, v)} |"
                + grid_cell
            )
        lines.append("")
    lines += _slowed_lines(results)
    ref_run = results["runs"].get(f"reference/{ref}")
    if ref_run and ref_run.get("records"):
        best = min(
            ((v.get("within") or {}).get(metric, math.inf) for k, v in runs.items() if k.startswith("1B/")),
            default=math.inf,
        )
        targets = {f"{ref}'s loss at B": ref_run["records"][-1].get(metric, math.inf), "best loss within B": best}
        names = sorted({v["method"] for v in runs.values()})
        lines += [
            "## Time to target losses",
            "",
            "Earliest training time at which any of the method's runs ended an epoch at or below the target "
            "(epoch granularity, so an upper bound).",
            "",
            "| method | "
            + " | ".join(f"to {t} ({_fmt(v, 2 if task == 'autoencoder' else 4)}) (s)" for t, v in targets.items())
            + " |",
            "|---|" + "---|" * len(targets),
        ]
        for name in names:
            cells = []
            for target in targets.values():
                times = [_time_to(v.get("records") or [], target, metric) for v in runs.values() if v["method"] == name]
                found = [t for t in times if t is not None]
                cells.append(_fmt(min(found) if found else None, 1))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if plots and budget:
        _plot(results, runs, budget, out / "loss_vs_time.png")
        lines += ["![loss against training time](loss_vs_time.png)", ""]
    return save_report(out, lines)


def _status(results: dict[str, Any], k: float, name: str, entry: dict[str, Any]) -> str:
    """A run's status, marked when it ran again because it was slowed or is still slowed."""
    key = run_key(k, name, float(entry.get("lr_factor", 1.0)))
    marks = (["run again"] if "first_run" in entry else []) + (
        ["slowed"] if key in (results.get("slowed") or {}) else []
    )
    return entry["status"] + (f" ({', '.join(marks)})" if marks else "")


def _slowed_lines(results: dict[str, Any]) -> list[str]:
    """The runs run again because the machine slowed them, and those still slowed (step 5 of the protocol)."""
    metric = results.get("score", "train_loss")
    again = {key: e for key, e in results["runs"].items() if "first_run" in e}
    still = results.get("slowed") or {}
    if "slow_tolerance" not in results or not (again or still):
        return []
    pct = f"{(results['slow_tolerance'] - 1) * 100:.0f}%"
    pooled = " (pooled with the record its rates came from)" if results.get("slow_pooled") else ""
    lines = [
        "## Slowed runs",
        "",
        f"A run whose median step time is more than {pct} above its method's median over the record{pooled} was "
        "slowed by the machine, not by its method: it runs once more, and that run is scored. The reference is not "
        "run again (B is what it measured), nor a run already repeated.",
        "",
    ]
    if again:
        lines += [
            "| run | step first (ms) | method's median (ms) | step again (ms) | loss first | loss again |",
            "|---|---|---|---|---|---|",
        ]
        for key, e in again.items():
            first = e["first_run"]
            lines.append(
                f"| {key} | {first['step_time_s'] * 1e3:.0f} | {first['method_median_s'] * 1e3:.0f} | "
                f"{_fmt(_ms(run_step_time(e)), 0)} | {_fmt((first.get('within') or {}).get(metric))} | "
                f"{_fmt((e.get('within') or {}).get(metric))} |"
            )
        lines.append("")
    if still:
        lines += [
            "Still slowed: "
            + "; ".join(
                f"{key} {v['step_time_s'] * 1e3:.0f} ms against {v['method_median_s'] * 1e3:.0f} ms"
                for key, v in still.items()
            )
            + ".",
            "",
        ]
    return lines


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _plot(results: dict[str, Any], runs: dict[str, Any], budget: float, path: Path) -> None:
    metric = results.get("score", "train_loss")
    fig, (ax,) = figure(1, width=9.0)
    names = sorted({v["method"] for v in runs.values()})
    colors = method_colors(names)
    styles = ["-", "--", ":", "-."]
    for i, name in enumerate(names):
        for j, k in enumerate(results["config"]["multiples"]):
            v = runs.get(f"{k:g}B/{name}")
            if not v or not v.get("records"):
                continue
            recs = v["records"]
            ax.plot(
                [r["train_time"] for r in recs],
                [r.get(metric, math.nan) for r in recs],
                color=colors[name],
                linestyle=styles[(j + i // 10) % len(styles)],
                marker="o",
                ms=2,
                label=f"{name} ({k:g}B)",
            )
    for k in results["config"]["multiples"]:
        ax.axvline(k * budget, color="grey", lw=0.8)
    label = "training loss (nats / example)" if metric == "train_loss" else f"{metric}"
    ax.set(xscale="log", yscale="log", xlabel="training time (s)", ylabel=label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    save_png(fig, path, dpi=110)
