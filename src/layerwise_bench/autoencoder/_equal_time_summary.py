"""Several seeds of ``layerwise bench equal-time`` read together (``layerwise report DIR DIR ...``): each
method's loss within k·B as mean [min, max] over seeds, LocoProp's best configuration against the best
baseline, and how much faster its step would have to be to win.

*What stands in the way*, per budget k·B and seed: let t* be the earliest training time at which one of
LocoProp's scored runs of that seed (on any budget) ended an epoch at or below the best baseline's loss within
k·B. Its step would have to be ``t* / (k·B)`` times faster to get there within k·B (epoch granularity and a
schedule that decays over a longer budget: an estimate, not a bound). Where no run of that seed gets there,
``T / (k·B)``, T its longest run's training time, is a lower bound, and the per-step quality stands in the way
as well.

The seeds' records must have been measured on one machine (``same_machine``: CPU model, ISA flags, torch threads,
device; a resume on another machine counts): a budget and an epoch time measured on another CPU say nothing about
this one's. Records from several machines are read together only with ``allow_mixed_machines``, and the report
then names each seed's machine and marks every table.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

from ..core._machine import describe_machine, same_machine
from ..core._plotting import figure, save_png
from ..core._record import machine_lines, machines_of, provenance, save_report
from ._equal_time_report import chosen_run, measured_epoch_time, run_key

__all__ = ["summarize_equal_time", "write_equal_time_summary"]

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


def _loss(run: dict[str, Any], k: float, name: str) -> float | None:
    """``name``'s scored loss within ``k``·B in the record ``run`` (its chosen learning rate's run)."""
    entry = chosen_run(run, k, name) or {}
    loss = (entry.get("within") or {}).get("train_loss")
    return float(loss) if loss is not None and math.isfinite(loss) else None


def _stats(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": math.inf, "min": math.inf, "max": math.inf, "n": 0, "values": values}
    return {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals), "n": len(vals), "values": values}


def _scored_runs(run: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """``name``'s scored run on every budget of the record ``run``."""
    return [e for k in run["config"]["multiples"] if (e := chosen_run(run, k, name)) is not None]


def _first_time_at(run: dict[str, Any], name: str, target: float) -> float | None:
    """The earliest training time at which one of ``name``'s scored runs in ``run`` ended an epoch at or below
    ``target``."""
    found = [
        r["train_time"] for e in _scored_runs(run, name) for r in e.get("records") or [] if r["train_loss"] <= target
    ]
    return float(min(found)) if found else None


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
    """Per multiple k and method, the loss within k·B across the records ``runs`` (one per seed), ranked by
    its mean; and LocoProp's best configuration (methods named ``locoprop*``) against the best other method.
    ``machines`` lists the machines the records were measured on, ``seed_machines`` each record's (numbers into
    ``machines``, from 1).

    Raises:
        ValueError: fewer than two records, a record that is not equal-time, records whose settings differ
            in more than the seed, or records measured on more than one machine without ``allow_mixed_machines``.
    """
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
                "loss": _stats([_loss(r, k, name) for r in runs]),
                "epochs": [e.get("epochs") for e in entries],
                "over_s": max(
                    (_over(e, k * (r.get("budget_s") or 0.0)) for e, r in zip(entries, runs, strict=True)), default=0.0
                ),
                "failed": sum(e.get("status") not in (None, "complete") for e in entries),
                "slowed": sum(_still_slowed(r, k, name) for r in runs),
                "epoch_time": _mean([measured_epoch_time(e) for e in entries]),
                "lr": sorted({e.get("lr", settings[0][name]) for e in entries}),
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
        "gap": _stats(list(gaps)),
        "gap_pct": 100 * (rows[lp]["loss"]["mean"] - base_mean) / base_mean if base_mean else math.nan,
        "wins": sum(g < 0 for g in gaps),
        "seeds_compared": len(gaps),
        "epoch_time_vs_reference": rows[lp]["epoch_time"] / rows[ref]["epoch_time"],
        "epoch_time_vs_baseline": rows[lp]["epoch_time"] / rows[base]["epoch_time"],
        "speedup_needed": _stats(list(speedups)),
        "unreached": len(bounds),
        "speedup_at_least": _stats(list(bounds)),
    }


def _still_slowed(run: dict[str, Any], k: float, name: str) -> bool:
    """Whether ``name``'s scored run within k·B is listed as still slowed in the record ``run``."""
    choice = (run.get("chosen") or {}).get(f"{k:g}B/{name}")
    return run_key(k, name, choice["factor"] if choice else 1.0) in (run.get("slowed") or {})


def _over(entry: dict[str, Any], budget: float) -> float:
    """Seconds by which a run's training time passed its budget (records of the epoch-count fit: its last
    epoch's, which was not credited)."""
    if "over_s" in entry:
        return float(entry["over_s"])
    recs = entry.get("records") or []
    return max(0.0, float(recs[-1]["train_time"]) - budget) if recs else 0.0


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else math.nan


def _f(v: float, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _spread(s: dict[str, Any], digits: int = 2) -> str:
    if s["n"] == 0:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return _f(s["mean"], digits)
    return f"{_f(s['mean'], digits)} [{_f(s['min'], digits)}, {_f(s['max'], digits)}]"


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
    budgets = ", ".join(_f(b, 1) for b in s["budgets"])
    lines = [
        f"# Equal wall-clock: deep autoencoder ({runs[0]['config']['dataset']}), {n} seeds",
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
            "stops when its next step would no longer fit; its score is the training loss where it stopped."
            if runs[0]["config"].get("schedule") == "time"
            else "Each method ran the epochs its estimated epoch time allowed within k·B, its schedule fitted to "
            "them; its score is the training loss after the last epoch that ended within k·B."
        )
        + " Losses: mean [min, max] over seeds (nats per image).",
        "",
    ]
    for k in s["multiples"]:
        e = s["by_multiple"][f"{k:g}"]
        rows, leader = e["rows"], e["rows"][e["ranked"][0]]["loss"]["mean"]
        lines += [
            f"## Within {k:g}·B{mark}",
            "",
            "| rank | method | lr | epochs run | epoch time (s) | loss within budget | vs the leader "
            "| most over the budget (s) | diverged or failed; slowed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i, name in enumerate(e["ranked"], 1):
            row = rows[name]
            epochs = sorted(x for x in row["epochs"] if x is not None)
            ran = (
                "–" if not epochs else _f(epochs[0]) if epochs[0] == epochs[-1] else f"{_f(epochs[0])}–{_f(epochs[-1])}"
            )
            vs = row["loss"]["mean"] / leader - 1 if row["loss"]["n"] and math.isfinite(leader) else math.inf
            missing = n - row["loss"]["n"]
            loss = _spread(row["loss"]) + (
                f" ({row['loss']['n']} of {n} seeds)" if missing and row["loss"]["n"] else ""
            )
            lrs = ", ".join(f"{x:.3g}" for x in row["lr"])
            marks = ([str(row["failed"])] if row["failed"] else []) + (
                [f"{row['slowed']} slowed"] if row["slowed"] else []
            )
            lines.append(
                f"| {i} | {name} | {lrs} | {ran} | {_f(row['epoch_time'])} | {loss} | "
                f"{'–' if not math.isfinite(vs) else f'{100 * vs:+.1f}%'} | {_f(row['over_s'])} | "
                f"{'; '.join(marks)} |"
            )
        lines.append("")
        if e.get("locoprop"):
            lines += [_locoprop_paragraph(e["locoprop"], rows, k, s["reference"]), ""]
    if plots:
        _plot(s, out / "loss_within_budget.png")
        lines += ["![loss within each budget, every seed](loss_within_budget.png)", ""]
    return save_report(out, lines)


def _locoprop_paragraph(lp: dict[str, Any], rows: dict[str, Any], k: float, ref: str) -> str:
    base, sp, low = lp["baseline"], lp["speedup_needed"], lp["speedup_at_least"]
    pct = f"{lp['gap_pct']:+.1f}%" if math.isfinite(lp["gap_pct"]) else "–"
    if sp["n"] and sp["mean"] > 1:
        way = f"To reach `{base}`'s loss within {k:g}·B its step would have to be about {_spread(sp)}× faster"
    elif sp["n"]:
        way = f"One of its runs reaches `{base}`'s loss after {_spread(sp)} of the budget"
    else:
        way = ""
    if sp["n"]:
        way += f" (estimated in the {sp['n']} of {lp['seeds_compared']} seeds in which one of its runs gets there)."
    if lp["unreached"] and low["min"] > 1:
        way += (
            f" In {lp['unreached']} seed(s) none of its runs gets there in the time it ran: there its step would "
            f"have to be more than {_f(low['min'])}× faster, if more steps got there at all."
        )
    elif lp["unreached"]:  # its longest run is this budget's own: no bound on a speed-up, only that none reached it
        way += (
            f" In {lp['unreached']} seed(s) none of its runs gets there, this budget's being its longest: a faster "
            "step alone is not shown to be enough, the loss it reaches per step stands in the way as well."
        )
    return (
        f"**LocoProp within {k:g}·B.** Its best configuration here, `{lp['best']}`, ends at "
        f"{_spread(rows[lp['best']]['loss'])} against {_spread(rows[base]['loss'])} for the best other method, "
        f"`{base}` ({pct} on the means); lower in {lp['wins']} of {lp['seeds_compared']} seeds. "
        f"Its epoch costs {lp['epoch_time_vs_reference']:.2f}× `{ref}`'s and {lp['epoch_time_vs_baseline']:.2f}× "
        f"`{base}`'s. {way.strip()}".rstrip()
    )


def _plot(s: dict[str, Any], path: Path) -> None:
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
        ax.set(xscale="log", xlabel="training loss within budget (nats / image)", title=f"within {k:g}·B")
        ax.grid(True, which="both", axis="x", alpha=0.3)
    save_png(fig, path, dpi=110)
