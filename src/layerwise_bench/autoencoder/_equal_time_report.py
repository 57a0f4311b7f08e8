"""Reports of ``layerwise bench equal-time``: one seed's record (methods ranked by the loss reached within each
budget, time to target losses, loss-against-time curves), and several seeds' records read together."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core._machine import describe_machine, same_machine
from ..core._plotting import figure, method_colors, save_png
from ..core._record import fmt, machine_lines, machines_of, md_table, provenance, save_report, spread, stats
from ..core._slow_runs import run_step_time

__all__ = [
    "chosen_run",
    "measured_epoch_time",
    "run_key",
    "summarize_equal_time",
    "write_equal_time_report",
    "write_equal_time_summary",
]


def run_key(k: float, name: str, factor: float) -> str:
    """The key of ``name``'s run within ``k``·B at ``factor`` times its tuned rate (factor 1: no suffix)."""
    return f"{k:g}B/{name}" if factor == 1 else f"{k:g}B/{name}@{factor:g}"


def chosen_run(results: dict[str, Any], k: float, name: str) -> dict[str, Any] | None:
    """The run of ``name`` within ``k``·B that the record scores: the chosen learning-rate factor's run (the
    only run when the record has no grid)."""
    return results["runs"].get(_chosen_key(results, k, name))


def _chosen_key(results: dict[str, Any], k: float, name: str) -> str:
    choice = (results.get("chosen") or {}).get(f"{k:g}B/{name}")
    return run_key(k, name, choice["factor"] if choice else 1.0)


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


def write_equal_time_report(results: dict[str, Any], out: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and ``loss_vs_time.png``) for an equal-time record."""
    out = Path(out)
    cfg, budget, chosen = results["config"], results.get("budget_s"), results.get("chosen") or {}
    ref, task = cfg["reference"], cfg.get("workload", "autoencoder")
    grid = [float(f) for f in cfg.get("lr_factors") or [1.0]]
    runs = {
        f"{k:g}B/{n}": r
        for k in cfg["multiples"]
        for n in results["lrs"]
        if (r := chosen_run(results, k, n)) is not None
    }
    metric = results.get("score", "train_loss")  # records before workloads: the autoencoder's training loss
    shown = [m for m in results.get("metrics", {}) if m != metric]
    digits = 2 if task == "autoencoder" else 4  # the autoencoder's losses are tens of nats
    centre = (
        "10-epoch tuned rate" if task == "autoencoder" else "centre rate (its tuned rate, else the workload's default)"
    )
    lines = [
        f"# Equal wall-clock: {'deep autoencoder' if task == 'autoencoder' else task} ({cfg['dataset']})",
        "",
        *provenance(results, f"seed {cfg['seed']}"),
        "",
        *(
            [
                f"Score: `{metric}`, {results['metrics'][metric]} (lower is better)."
                + "".join(f" Also shown: `{m}`, {results['metrics'][m]}." for m in shown),
                "",
            ]
            if "metrics" in results
            else []
        ),
        f"Budget B = the training time of `{ref}` for {cfg['reference_epochs']} epochs in this run: "
        f"**{fmt(budget, 1)} s**. "
        + (
            _ON_THE_CLOCK.replace("the training loss where", f"its `{metric}` where")
            if cfg.get("schedule") == "time"
            else _FITTED_EPOCHS
        )
        + (
            f" Learning rates tuned on each budget: every method ran {', '.join(f'{f:g}' for f in grid)} × its "
            f"{centre}, and the best within the budget is scored; a best on the grid's edge extended the grid one step "
            "further out, up to twice ('edge': the best is still on the edge of the factors run)."
            if len(grid) > 1
            else ""
        )
        + (f" Learning rates as chosen on each budget in `{cfg['lrs_from']}`." if cfg.get("lrs_from") else ""),
        "",
    ]
    loss = "loss" if metric == "train_loss" else metric
    head = ["rank", "method", "lr", "epochs run", "epoch time (s)", f"{loss} within budget", *shown, "time used (s)"]
    head += ["over by (s)", "status", *(["loss at each lr factor"] if len(grid) > 1 else [])]
    for k in cfg["multiples"]:
        rows = []
        ranked = sorted(
            (v for key, v in runs.items() if key.startswith(f"{k:g}B/")),
            key=lambda v: (v.get("within") or {}).get(metric, math.inf),
        )
        for i, v in enumerate(ranked, 1):
            name, within = v["method"], v.get("within") or {}
            edge = " (edge)" if chosen.get(f"{k:g}B/{name}", {}).get("edge") else ""
            at = sorted(  # the grid and any factor it was extended by past an edge
                (
                    (float(e.get("lr_factor", 1.0)), e.get("within") or {})
                    for key, e in results["runs"].items()
                    if key.startswith(f"{k:g}B/") and e.get("method") == name
                ),
                key=lambda t: t[0],
            )
            rows.append(
                [i, name, f"{v.get('lr', results['lrs'][name]['lr']):.3g}{edge}", fmt(v.get("epochs"))]
                + [fmt(measured_epoch_time(v), 2), fmt(within.get(metric), digits)]
                + [*(fmt(within.get(m), 4) for m in shown), fmt(within.get("train_time"), 1), fmt(v.get("over_s"), 2)]
                + [_status(results, k, name, v)]
                + ([", ".join(f"{f:g}: {fmt(w.get(metric), digits)}" for f, w in at)] if len(grid) > 1 else [])
            )
        lines += [f"## Within {k:g}·B = {fmt(k * budget if budget else None, 1)} s", "", *md_table(head, rows), ""]
    lines += _slowed_lines(results)
    ref_run = results["runs"].get(f"reference/{ref}")
    if ref_run and ref_run.get("records"):
        within_b = ((v.get("within") or {}).get(metric, math.inf) for k, v in runs.items() if k.startswith("1B/"))
        targets = {
            f"{ref}'s loss at B": ref_run["records"][-1].get(metric, math.inf),
            "best loss within B": min(within_b, default=math.inf),
        }
        times = [
            [name, *(fmt(min(_times_to(runs, name, t, metric), default=None), 1) for t in targets.values())]
            for name in sorted({v["method"] for v in runs.values()})
        ]
        lines += [
            "## Time to target losses",
            "",
            "Earliest training time at which any of the method's runs ended an epoch at or below the target "
            "(epoch granularity, so an upper bound).",
            "",
            *md_table(["method", *(f"to {t} ({fmt(v, digits)}) (s)" for t, v in targets.items())], times),
            "",
        ]
    if plots and budget:
        _plot(results, runs, budget, out / "loss_vs_time.png")
        lines += ["![loss against training time](loss_vs_time.png)", ""]
    return save_report(out, lines)


def _times_to(runs: dict[str, Any], name: str, target: float, metric: str) -> list[float]:
    """The earliest training time at which each of ``name``'s ``runs`` ended an epoch at or below ``target``."""
    found = (_time_to(v.get("records") or [], target, metric) for v in runs.values() if v["method"] == name)
    return [t for t in found if t is not None]


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
        head = ["run", "step first (ms)", "method's median (ms)", "step again (ms)", "loss first", "loss again"]
        rows = [
            [key, f"{e['first_run']['step_time_s'] * 1e3:.0f}", f"{e['first_run']['method_median_s'] * 1e3:.0f}"]
            + [fmt(None if (t := run_step_time(e)) is None else t * 1e3, 0)]
            + [fmt((run.get("within") or {}).get(metric)) for run in (e["first_run"], e)]
            for key, e in again.items()
        ]
        lines += [*md_table(head, rows), ""]
    if still:
        slow = (
            f"{key} {v['step_time_s'] * 1e3:.0f} ms against {v['method_median_s'] * 1e3:.0f} ms"
            for key, v in still.items()
        )
        lines += ["Still slowed: " + "; ".join(slow) + ".", ""]
    return lines


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


# Several seeds read together. *What stands in the way*, per budget k·B and seed: t* is the earliest training time
# at which one of LocoProp's scored runs of that seed ended an epoch at or below the best baseline's loss within k·B;
# its step would have to be t* / (k·B) times faster (an estimate). Where no run gets there, T / (k·B), T its longest
# run's training time, is a lower bound. Records from several machines (``same_machine``) are read together only
# with ``allow_mixed_machines``, which marks every table.

_SAME = (
    "dataset",
    "subset",
    "batch_size",
    "activation",
    "warmup_epochs",
    "multiples",
    "reference",
    "reference_epochs",
    "schedule",
)


def _loss(run: dict[str, Any], k: float, name: str, metric: str | None = None) -> float | None:
    """``name``'s scored loss (or ``metric``) within ``k``·B in the record ``run`` (its chosen learning rate's run)."""
    entry = chosen_run(run, k, name) or {}
    loss = (entry.get("within") or {}).get(metric or run.get("score", "train_loss"))
    return float(loss) if loss is not None and math.isfinite(loss) else None


def _also(run: dict[str, Any]) -> list[str]:
    """The metrics a workload's record reports besides its score (none for the autoencoder's)."""
    return [m for m in run.get("metrics") or {} if m != run.get("score", "train_loss")]


def _values(values: Sequence[float | None]) -> dict[str, Any]:
    """:func:`stats` (inf where there are no values) and the ``values`` themselves."""
    return {**stats(values, math.inf), "values": values}


def _scored_runs(run: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """``name``'s scored run on every budget of the record ``run``."""
    return [e for k in run["config"]["multiples"] if (e := chosen_run(run, k, name)) is not None]


def _first_time_at(run: dict[str, Any], name: str, target: float) -> float | None:
    """The earliest training time at which one of ``name``'s scored runs in ``run`` ended an epoch at or below
    ``target``."""
    found = (_time_to(e.get("records") or [], target, run.get("score", "train_loss")) for e in _scored_runs(run, name))
    return min((t for t in found if t is not None), default=None)


def _seed_machines(runs: list[dict[str, Any]], machines: list[dict[str, Any]]) -> list[list[int]]:
    """Per record, the (1-based) numbers in ``machines`` of the machines it was measured on (first, then those it
    was resumed on)."""
    return [
        sorted(
            {
                next(i for i, m in enumerate(machines, 1) if same_machine(env, m))
                for env in [r.get("environment") or {}, *(r.get("resumed_on") or [])]
            }
        )
        for r in runs
    ]


def summarize_equal_time(runs: list[dict[str, Any]], *, allow_mixed_machines: bool = False) -> dict[str, Any]:
    """Per multiple k and method, the loss within k·B across ``runs`` (one record per seed), ranked by its mean, and
    LocoProp's best configuration against the best other method. ValueError for fewer than two records, records that
    differ in more than the seed, or several machines without ``allow_mixed_machines``."""
    kinds = [r.get("benchmark") for r in runs]
    if len(runs) < 2 or any(k != "equal-time" for k in kinds):
        raise ValueError(f"Expected two or more equal-time records (one per seed); got {kinds}.")
    cfgs = [r["config"] for r in runs]
    for key in _SAME:
        if len({repr(c.get(key)) for c in cfgs}) > 1:
            raise ValueError(
                f"The records differ in {key!r} ({[c.get(key) for c in cfgs]}); read together only records that "
                "differ in --seed alone."
            )
    settings = [{n: v["lr"] for n, v in r["lrs"].items()} for r in runs]
    if any(x != settings[0] for x in settings):
        raise ValueError(
            f"The records differ in their methods or learning rates ({settings}); read together only records of "
            "the same --methods and --tuned file that differ in --seed alone."
        )
    seeds = [c["seed"] for c in cfgs]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"Two records have the same seed ({seeds}): pass each seed's directory once.")
    machines = machines_of(runs)
    seed_machines = _seed_machines(runs, machines)
    if len(machines) > 1 and not allow_mixed_machines:
        where = "; ".join(
            f"seed {sd}: " + " and ".join(describe_machine(machines[i - 1]) for i in ms)
            for sd, ms in zip(seeds, seed_machines, strict=True)
        )
        raise ValueError(
            f"The records were measured on {len(machines)} different machines ({where}): their budgets and times "
            "are not comparable, so they are not put into one table. Rerun the seeds on one machine, or pass "
            "--allow-mixed-machines to read them together anyway (the report marks them)."
        )
    names, ref = list(settings[0]), cfgs[0]["reference"]
    out: dict[str, Any] = {
        "machines": machines,
        "seed_machines": seed_machines,
        "seeds": seeds,
        "budgets": [r.get("budget_s") for r in runs],
        "multiples": cfgs[0]["multiples"],
        "reference": ref,
        "by_multiple": {},
    }
    for k in out["multiples"]:
        rows: dict[str, dict[str, Any]] = {}
        for name in names:
            entries = [chosen_run(r, k, name) or {} for r in runs]
            rows[name] = {
                "loss": _values([_loss(r, k, name) for r in runs]),
                "epochs": [e.get("epochs") for e in entries],
                "over_s": max(
                    (_over(e, k * (r.get("budget_s") or 0.0)) for e, r in zip(entries, runs, strict=True)), default=0.0
                ),
                "failed": sum(e.get("status") not in (None, "complete") for e in entries),
                "slowed": sum(_chosen_key(r, k, name) in (r.get("slowed") or {}) for r in runs),  # still slowed
                "epoch_time": stats(measured_epoch_time(e) for e in entries)["mean"],
                "lr": sorted({e.get("lr", settings[0][name]) for e in entries}),
                "also": {m: _values([_loss(r, k, name, m) for r in runs]) for m in _also(runs[0])},
            }
        # a method scored in fewer seeds (diverged, or no epoch inside the budget) ranks after those scored in more
        ranked = sorted(names, key=lambda n: (-rows[n]["loss"]["n"], rows[n]["loss"]["mean"]))
        entry: dict[str, Any] = {"rows": rows, "ranked": ranked}
        scored = [n for n in ranked if rows[n]["loss"]["n"]]
        loco = [n for n in scored if n.startswith("locoprop")]
        others = [n for n in scored if not n.startswith("locoprop")]
        if loco and others:
            entry["locoprop"] = _against(runs, rows, k, loco[0], others[0], ref)
        out["by_multiple"][f"{k:g}"] = entry
    return out


def _against(
    runs: list[dict[str, Any]], rows: dict[str, Any], k: float, lp: str, base: str, ref: str
) -> dict[str, Any]:
    """LocoProp's best configuration ``lp`` against the best other method ``base`` within k·B, seed by seed."""
    gaps, speedups, bounds = [], [], []
    for r in runs:
        lv, bv = _loss(r, k, lp), _loss(r, k, base)
        if lv is None or bv is None:
            continue
        gaps.append(lv - bv)
        budget = k * r["budget_s"]
        first = _first_time_at(r, lp, bv)
        if first is not None:
            speedups.append(first / budget)
        else:  # not reached in the time it ran: it would need more than its longest run
            ran = max((e["records"][-1]["train_time"] for e in _scored_runs(r, lp) if e.get("records")), default=0.0)
            bounds.append(max(ran, budget) / budget)  # its run within this very budget did not get there: > 1x
    base_mean = rows[base]["loss"]["mean"]
    return {
        "best": lp,
        "baseline": base,
        "gap": _values(gaps),
        "gap_pct": 100 * (rows[lp]["loss"]["mean"] - base_mean) / base_mean if base_mean else math.nan,
        "wins": sum(g < 0 for g in gaps),
        "seeds_compared": len(gaps),
        "epoch_time_vs_reference": rows[lp]["epoch_time"] / rows[ref]["epoch_time"],
        "epoch_time_vs_baseline": rows[lp]["epoch_time"] / rows[base]["epoch_time"],
        "speedup_needed": _values(speedups),
        "unreached": len(bounds),
        "speedup_at_least": _values(bounds),
    }


def _over(entry: dict[str, Any], budget: float) -> float:
    """Seconds by which a run's training time passed its budget (records of the epoch-count fit: its last
    epoch's, which was not credited)."""
    if "over_s" in entry:
        return float(entry["over_s"])
    recs = entry.get("records") or []
    return max(0.0, float(recs[-1]["train_time"]) - budget) if recs else 0.0


def write_equal_time_summary(
    runs: list[dict[str, Any]],
    out: str | Path,
    sources: list[str | Path] | None = None,
    *,
    plots: bool = True,
    allow_mixed_machines: bool = False,
) -> Path:
    """Write ``out/report.md`` (and ``loss_within_budget.png``) reading the equal-time records ``runs``
    together; ``sources``, their directories, are linked from it. Records measured on different machines are
    refused (ValueError) unless ``allow_mixed_machines``, which marks every table."""
    out = Path(out)
    s = summarize_equal_time(runs, allow_mixed_machines=allow_mixed_machines)
    n = len(runs)
    mixed = len(s["machines"]) > 1
    mark = " (mixed machines)" if mixed else ""
    budgets = ", ".join(fmt(b, 1) for b in s["budgets"])
    task, metric = runs[0]["config"].get("workload", "autoencoder"), runs[0].get("score", "train_loss")
    unit = (runs[0].get("metrics") or {}).get(metric, "nats per image")
    title = "deep autoencoder" if task == "autoencoder" else task
    finite = [v["loss"]["mean"] for e in s["by_multiple"].values() for v in e["rows"].values() if v["loss"]["n"]]
    digits = min(5, max(2, 3 - math.floor(math.log10(min(finite))))) if finite and min(finite) > 0 else 2
    lines = [
        f"# Equal wall-clock: {title} ({runs[0]['config']['dataset']}), {n} seeds",
        "",
        *provenance(runs[0], f"seeds {', '.join(str(x) for x in s['seeds'])}"),
        "",
        *(
            [
                *machine_lines(runs),
                "",
                "Each seed's machine: "
                + ", ".join(
                    f"seed {sd} on machine {' and '.join(map(str, ms))}"
                    for sd, ms in zip(s["seeds"], s["seed_machines"], strict=True)
                )
                + ". Read together with --allow-mixed-machines: every table below mixes them.",
                "",
            ]
            if mixed
            else []
        ),
        "One record per seed, each with its own budget; the command above is the first seed's, the "
        "others differ in `--seed` and `--out` only.",
        *(
            [
                "Per seed: "
                + ", ".join(
                    f"[seed {sd}]({os.path.relpath(src, out)}/report.md)"
                    for sd, src in zip(s["seeds"], sources, strict=True)
                )
            ]
            if sources
            else []
        ),
        "",
        f"Budget B = the training time of `{s['reference']}` for {runs[0]['config']['reference_epochs']} epochs, "
        f"measured in each seed's run: {budgets} s. "
        + (
            "Each method trains on the clock within k·B, its rate decaying linearly with the training time used, and "
            "stops when its next step would no longer fit; its score is "
            + ("the training loss" if metric == "train_loss" else f"its `{metric}`")
            + " where it stopped."
            if runs[0]["config"].get("schedule") == "time"
            else "Each method ran the epochs its estimated epoch time allowed within k·B, its schedule fitted to "
            "them; its score is the training loss after the last epoch that ended within k·B."
        )
        + (
            f" Scores: mean [min, max] over seeds ({unit})."
            if task != "autoencoder"
            else " Losses: mean [min, max] over seeds (nats per image)."
        ),
        "",
    ]
    for k in s["multiples"]:
        e = s["by_multiple"][f"{k:g}"]
        rows, leader = e["rows"], e["rows"][e["ranked"][0]]["loss"]["mean"]
        table = []
        for i, name in enumerate(e["ranked"], 1):
            row = rows[name]
            epochs = sorted(x for x in row["epochs"] if x is not None)
            ran = "–" if not epochs else fmt(epochs[0]) + ("" if epochs[0] == epochs[-1] else f"–{fmt(epochs[-1])}")
            vs = row["loss"]["mean"] / leader - 1 if row["loss"]["n"] and math.isfinite(leader) else math.inf
            scored = row["loss"]["n"]
            loss = spread(row["loss"], digits) + (f" ({scored} of {n} seeds)" if scored and scored < n else "")
            marks = [str(row["failed"])] * bool(row["failed"]) + [f"{row['slowed']} slowed"] * bool(row["slowed"])
            lrs = ", ".join(f"{x:.3g}" for x in row["lr"])
            vs_text = "–" if not math.isfinite(vs) else f"{100 * vs:+.1f}%"
            also = [spread(v, 4 if "accuracy" in m else digits) for m, v in row["also"].items()]
            table.append(
                [i, name, lrs, ran, fmt(row["epoch_time"]), loss, vs_text, fmt(row["over_s"]), "; ".join(marks), *also]
            )
        head = ["rank", "method", "lr", "epochs run", "epoch time (s)", "loss within budget", "vs the leader"]
        head += ["most over the budget (s)", "diverged or failed; slowed", *(f"`{m}`" for m in _also(runs[0]))]
        lines += [f"## Within {k:g}·B{mark}", "", *md_table(head, table)]
        lines.append("")
        if e.get("locoprop"):
            lines += [_locoprop_paragraph(e["locoprop"], rows, k, s["reference"], digits), ""]
    if plots:
        label = f"`{metric}` within budget" if task != "autoencoder" else "training loss within budget (nats / image)"
        _plot_seeds(s, out / "loss_within_budget.png", label.replace("`", ""))
        lines += ["![loss within each budget, every seed](loss_within_budget.png)", ""]
    return save_report(out, lines)


def _locoprop_paragraph(lp: dict[str, Any], rows: dict[str, Any], k: float, ref: str, digits: int = 2) -> str:
    base, sp, low = lp["baseline"], lp["speedup_needed"], lp["speedup_at_least"]
    pct = f"{lp['gap_pct']:+.1f}%" if math.isfinite(lp["gap_pct"]) else "–"
    if sp["n"] and sp["mean"] > 1:
        way = f"To reach `{base}`'s loss within {k:g}·B its step would have to be about {spread(sp)}× faster"
    elif sp["n"]:
        way = f"One of its runs reaches `{base}`'s loss after {spread(sp)} of the budget"
    else:
        way = ""
    if sp["n"]:
        way += f" (estimated in the {sp['n']} of {lp['seeds_compared']} seeds in which one of its runs gets there)."
    if lp["unreached"] and low["min"] > 1:
        way += (
            f" In {lp['unreached']} seed(s) none of its runs gets there in the time it ran: there its step would "
            f"have to be more than {fmt(low['min'])}× faster, if more steps got there at all."
        )
    elif lp["unreached"]:  # its longest run is this budget's own: no bound on a speed-up, only that none reached it
        way += (
            f" In {lp['unreached']} seed(s) none of its runs gets there, this budget's being its longest: a faster "
            "step alone is not shown to be enough, the loss it reaches per step stands in the way as well."
        )
    return (
        f"**LocoProp within {k:g}·B.** Its best configuration here, `{lp['best']}`, ends at "
        f"{spread(rows[lp['best']]['loss'], digits)} against {spread(rows[base]['loss'], digits)} for the best other "
        "method, "
        f"`{base}` ({pct} on the means); lower in {lp['wins']} of {lp['seeds_compared']} seeds. "
        f"Its epoch costs {lp['epoch_time_vs_reference']:.2f}× `{ref}`'s and {lp['epoch_time_vs_baseline']:.2f}× "
        f"`{base}`'s. {way.strip()}".rstrip()
    )


def _plot_seeds(s: dict[str, Any], path: Path, label: str = "training loss within budget (nats / image)") -> None:
    fig, axes = figure(len(s["multiples"]), width=5.5)
    for ax, k in zip(axes, s["multiples"], strict=True):
        e = s["by_multiple"][f"{k:g}"]
        ranked = [n for n in e["ranked"] if e["rows"][n]["loss"]["n"]]
        for y, name in enumerate(reversed(ranked)):
            st = e["rows"][name]["loss"]
            color = "C3" if name.startswith("locoprop") else "C0"
            ax.plot([st["min"], st["max"]], [y, y], color=color, lw=1.5)
            ax.plot([v for v in st["values"] if v is not None], [y] * st["n"], "|", color=color, ms=8)
            ax.plot([st["mean"]], [y], "o", color=color, ms=5)
        ax.set_yticks(range(len(ranked)), list(reversed(ranked)), fontsize=7)
        ax.set(xscale="log", xlabel=label, title=f"within {k:g}·B")
        ax.grid(True, which="both", axis="x", alpha=0.3)
    save_png(fig, path, dpi=110)
