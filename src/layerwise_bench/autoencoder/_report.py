"""Report of one or several benchmark runs: a Markdown table and PNG plots (mean and spread)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ..core._harness import AutoencoderConfig
from ..core._io import read_json
from ..core._plotting import figure, method_colors, palette, save_png
from ..core._record import machine_lines, save_report, spread, stats

__all__ = ["load_runs", "summarize", "time_to_final_loss", "write_report"]


def load_runs(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Read ``results.json`` from each directory, with a clear error for a missing one."""
    runs = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no results file at {str(path)!r}: pass directories written by "
                "'layerwise bench autoencoder --out DIR'."
            )
        runs.append(read_json(path))
    return runs


def reference_of(names: Any) -> str | None:
    """The method the ratios are taken against: ``adam`` (the autoencoder's), else ``adamw`` (the supervised
    workloads' reference), else none."""
    return next((n for n in ("adam", "adamw") if n in names), None)


def extra_metrics(run: dict[str, Any]) -> list[str]:
    """A workload's metrics beyond the training and test loss (e.g. ``test_accuracy``; none for the autoencoder)."""
    return [m for m in run.get("metrics") or {} if m not in ("train_loss", "test_loss")]


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method, across runs: final and best train loss, final test loss and the workload's other metrics, time,
    step time, and their ratios to :func:`reference_of`'s."""
    names: list[str] = []
    for run in runs:
        names += [n for n in run["methods"] if n not in names]
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        entries = [run["methods"][name] for run in runs if name in run["methods"]]
        recs = [e["records"] for e in entries if e["records"]]
        table[name] = {
            "summary": entries[0].get("summary", ""),
            "lr": sorted({e["lr"] for e in entries}),
            "status": sorted({e["status"] for e in entries}),
            "epochs": stats([float(r[-1]["epoch"]) for r in recs]),
            "final_train": stats([r[-1]["train_loss"] for r in recs]),
            "best_train": stats([min(x["train_loss"] for x in r) for r in recs]),
            "final_test": stats([r[-1]["test_loss"] for r in recs]),
            "train_time": stats([r[-1]["train_time"] for r in recs]),
            "step_time": stats([statistics.median(x["step_time_median"] for x in r) for r in recs]),
            "extra": {m: stats([r[-1].get(m) for r in recs]) for m in extra_metrics(runs[0])},
        }
    ref_name = reference_of(names)
    adam = table.get(ref_name, {}) if ref_name else {}
    for row in table.values():
        for key, ref in (("step_vs_adam", "step_time"), ("time_vs_adam", "train_time")):
            base = adam.get(ref, {}).get("mean")
            row[key] = row[ref]["mean"] / base if base else float("nan")
    for name in names:
        row = table[name]
        reach = _times_to(runs, name, ref_name) if ref_name else []
        row["time_to_adam_loss"] = stats(reach)
        base = adam.get("train_time", {}).get("mean")
        row["reach_vs_adam"] = row["time_to_adam_loss"]["mean"] / base if reach and base else float("nan")
    return table


def time_to_final_loss(run: dict[str, Any], name: str, target: str) -> float | None:
    """Training seconds until ``name`` first ends an epoch at or below ``target``'s final training loss in the
    same run (epoch granularity, so an upper bound); None if it never does, if either has no records, or if
    ``target``'s run did not complete (a diverged run's last loss is not a final loss)."""
    ref = run["methods"][target]["records"]
    if not ref or run["methods"][target].get("status", "complete") != "complete":
        return None
    for rec in run["methods"][name]["records"]:
        if rec["train_loss"] <= ref[-1]["train_loss"]:
            return float(rec["train_time"])
    return None


def _times_to(runs: list[dict[str, Any]], name: str, target: str) -> list[float]:
    """:func:`time_to_final_loss` in every run holding both methods in which it is reached."""
    both = [run for run in runs if name in run["methods"] and target in run["methods"]]
    return [t for run in both if (t := time_to_final_loss(run, name, target)) is not None]


def _reach_lines(runs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """A table: each method's training time to every other method's final training loss (mean over runs)."""
    if len(names) < 2:
        return []
    lines = [
        "",
        "Training time (s) to reach each method's final training loss (columns), in the same run; mean over the "
        "runs in which it is reached, '–' where it never is (or the column's run did not complete). The "
        "diagonal is each method's own time to its end "
        "(or earlier, if a previous epoch was as low).",
        "",
        "| method | " + " | ".join(f"to {t}'s" for t in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name in names:
        cells = []
        for target in names:
            reached = _times_to(runs, name, target)
            cells.append(f"{statistics.fmean(reached):.1f}" if reached else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _resolved(cfg: dict[str, Any]) -> dict[str, Any]:
    """The record's config with the values the run used in place of its ``None`` defaults."""
    try:
        return AutoencoderConfig(**cfg).resolved()
    except (TypeError, ValueError):  # a record written by another version: show it as saved
        return cfg


def _ratio(v: float) -> str:
    return "n/a" if v != v else f"{v:.2f}"


_STYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*", "<", ">", "p", "h"]


def line_style(i: int) -> tuple[str, str, str]:
    """(colour, line style, marker) of the ``i``-th line: no two of the first 120 look alike, and the first 60
    differ in colour. Reports colour methods with ``method_colors`` (the same method, the same colour)."""
    colours = palette()
    return colours[i % len(colours)], _STYLES[(i // 10 + i % 2) % len(_STYLES)], _MARKERS[i % len(_MARKERS)]


def _plot(runs: list[dict[str, Any]], names: list[str], x_key: str, path: Path, xlabel: str) -> None:
    from matplotlib.ticker import LogLocator, ScalarFormatter

    fig, axes = figure(2)
    colors = method_colors(names)
    for i, name in enumerate(names):
        _, style, marker = line_style(i)
        color = colors[name]
        recs = [
            run["methods"][name]["records"]
            for run in runs
            if name in run["methods"] and run["methods"][name]["records"]
        ]
        if not recs:
            continue
        n = min(len(r) for r in recs)
        for ax, key in zip(axes, ("train_loss", "test_loss"), strict=True):
            ys = np.array([[x[key] for x in r[:n]] for r in recs], dtype=float)
            xs = np.array([[x[x_key] for x in r[:n]] for r in recs], dtype=float).mean(axis=0)
            ax.plot(xs, ys.mean(axis=0), color=color, linestyle=style, marker=marker, ms=3, label=name)
            if len(recs) > 1:
                ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.2)
    for ax, title in zip(axes, ("training loss (full set)", "test loss"), strict=True):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))  # labelled ticks in a decade
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        if x_key == "train_time":  # a log time axis: the slowest method does not squeeze the others
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss (nats / example)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    save_png(fig, path, dpi=110)


def _sanity_lines(run: dict[str, Any]) -> list[str]:
    """For an official-settings LocoProp-M run on MNIST: its curve next to the official notebook's."""
    from ..methods._locoprop import OFFICIAL_SANITY_CURVE

    cfg, entry = run["config"], run["methods"].get("locoprop-m")
    if (
        not entry
        or cfg["dataset"] != "mnist"
        or cfg.get("subset")
        or cfg["activation"] != "tanh"
        or (cfg.get("schedule_epochs") or cfg["epochs"]) != 100
        or entry.get("lr") != 1e-5
    ):
        return []
    ours = {r["epoch"]: r["train_loss"] for r in entry["records"]}
    rows = [
        f"| {e} | {ref:.1f} | {ours[e]:.1f} | {100 * (ours[e] - ref) / ref:+.1f}% |"
        for e, ref in OFFICIAL_SANITY_CURVE.items()
        if e in ours
    ]
    return [
        "",
        "LocoProp-M with the official settings against the official notebook's training-loss curve:",
        "",
        "| epoch | official | layerwise | difference |",
        "|---|---|---|---|",
        *rows,
    ]


_DATA = {
    "digits": (
        "64 pixels (8×8)",
        "Data: scikit-learn's digits (1,797 images of 8×8 pixels, shipped with scikit-learn, so this runs offline "
        "in minutes) is a small stand-in for the paper's benchmark, the same kind of autoencoder on MNIST's "
        "60,000 images of 28×28 pixels (`--dataset mnist`). Rankings and times on digits need not carry over: "
        "the MNIST records are in the repository's `benchmarks/` (e.g. `benchmarks/retuned-10ep-mnist-cpu`, "
        "`benchmarks/equal-time-mnist-cpu`).",
    ),
    "mnist": ("784 pixels (28×28)", "Data: MNIST, the paper's benchmark (60,000 training images of 28×28 pixels)."),
}


def _names(items: list[tuple[str, float]], digits: int = 2, unit: str = "") -> str:
    return ", ".join(f"{n} ({v:.{digits}f}{unit})" for n, v in items)


def _reading_lines(runs: list[dict[str, Any]], table: dict[str, dict[str, Any]], cfg: dict[str, Any]) -> list[str]:
    """A few sentences, from the numbers, on what the table says: the loss, the order per epoch and on the clock."""
    final = {
        n: r["final_train"]["mean"]
        for n, r in table.items()
        if "complete" in r["status"] and math.isfinite(r["final_train"]["mean"])
    }
    if not final or cfg.get("workload", "autoencoder") != "autoencoder":
        return []
    pixels, data_note = _DATA.get(cfg.get("dataset", ""), ("its pixels", ""))
    many = " (means over the runs)" if len(runs) > 1 else ""
    lines = [
        "",
        "## What the numbers say",
        "",
        f"The loss is the deep autoencoder's reconstruction error: the sigmoid cross-entropy between each image and "
        f"its reconstruction, summed over the image's {pixels} and averaged over images (nats per image). Lower "
        "is better.",
    ]
    ranked = sorted(final.items(), key=lambda kv: kv[1])
    epochs = spread(table[ranked[0][0]]["epochs"], 0)
    text = f"Per epoch: after {epochs} epochs the lowest training loss{many} is {_names(ranked[:1])}"
    if 1 < len(ranked) <= 4:
        text += f", then {_names(ranked[1:])}"
    elif len(ranked) > 4:
        text += f", then {_names(ranked[1:3])}; the highest is {_names(ranked[-1:])}"
    text += "."
    tests = sorted(
        ((n, table[n]["final_test"]["mean"]) for n in final if math.isfinite(table[n]["final_test"]["mean"])),
        key=lambda kv: kv[1],
    )
    if tests:
        text += f" On the held-out test images the lowest is {_names(tests[:1])}."
    failed = [n for n in table if n not in final]
    if failed:
        text += f" Not completed (diverged or stopped; no final loss): {', '.join(failed)}."
    lines += ["", text]
    # On the clock: who first reached a reference loss (Adam's final one, else the highest final one).
    target = "adam" if "adam" in final else ranked[-1][0]
    reach = []
    for name in final:
        if times := _times_to(runs, name, target):
            reach.append((name, statistics.fmean(times)))
    reach.sort(key=lambda kv: kv[1])
    others = [(n, t) for n, t in reach if n != target]
    if len(final) > 1 and reach:
        own = dict(reach).get(target)
        text = f"On the clock: {target}'s final training loss ({final[target]:.2f}) was reached "
        if others:
            text += f"first by {others[0][0]}, after {others[0][1]:.1f} s of training"
            text += f", then by {_names(others[1:3], 1, ' s')}" if len(others) > 1 else ""
        else:
            text += "by no other method"
        text += f"; {target} itself took {own:.1f} s" if own is not None else ""
        never = [n for n in final if n not in dict(reach)]
        text += f"; {', '.join(never)} never reached it" if never and others else ""
        text += ". Times are training seconds at the end of the first epoch at or below that loss (upper bounds)."
        if reach[0][0] != ranked[0][0]:
            text += (
                f" The lowest per epoch ({ranked[0][0]}) is not the first on the clock ({reach[0][0]}): "
                "a costlier step can win per epoch and lose per second (see 'median step')."
            )
        lines += ["", text]
    untuned = [
        n for n in table if any(run["methods"].get(n, {}).get("lr_source") == "default (untuned)" for run in runs)
    ]
    if untuned:
        lines += [
            "",
            f"Learning rates: {', '.join(untuned)} ran at the default rate of "
            f"{'its method' if len(untuned) == 1 else 'each method'}, not one tuned on this data set "
            f"(`layerwise bench tune --methods {','.join(untuned)}` tunes them); the others at their tuned rate.",
        ]
    if data_note:
        lines += ["", data_note]
    return lines


def write_report(runs: list[dict[str, Any]], out: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and ``loss_vs_epoch.png``, ``loss_vs_time.png``) into ``out``."""
    out = Path(out)
    table = summarize(runs)
    first = runs[0]
    cfg, env = _resolved(first["config"]), first.get("environment", {})
    ref = {"adam": "Adam", "adamw": "AdamW"}.get(reference_of(table) or "", "Adam")
    extras = extra_metrics(first)
    lines = [
        f"# Deep autoencoder benchmark ({cfg['dataset']})"
        if cfg.get("workload", "autoencoder") == "autoencoder"
        else f"# Benchmark on {cfg['workload']} ({cfg['dataset']})",
        "",
        f"{len(runs)} run(s); config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()) + ".",
        f"Measured on: {env.get('device', '?')}"
        + (f" ({env['gpu']})" if env.get("gpu") else "")
        + f", {env.get('processor', '?')}, torch {env.get('torch', '?')}, {env.get('torch_threads', '?')} threads.",
        "",
        *machine_lines(runs),
        "",
        "Commands:",
        "",
    ]
    lines += [f"    {run.get('command') or '(not recorded)'}" for run in runs]
    for run in runs:
        resumed = run.get("resumed_with") or []
        if resumed:
            lines += ["", "Resumed with:", "", *[f"    {c}" for c in resumed]]
            split = sorted(
                name
                for name, m in run["methods"].items()
                if len({r.get("segment", 0) for r in m.get("records", [])}) > 1
            )
            if split:
                lines.append(
                    f"Trained across invocations (each epoch's `segment` in results.json says which): "
                    f"{', '.join(split)}; their times add up the segments, which may have run under other load."
                )
    lines += _reading_lines(runs, table, cfg)
    lines += [
        "",
        (
            "Losses are sigmoid cross-entropy summed over pixels, averaged over examples (nats). "
            if cfg.get("workload", "autoencoder") == "autoencoder"
            else f"Losses are the {cfg['workload']} workload's (`layerwise_bench.workloads`; docs/benchmarks.md). "
        )
        + "With several runs: mean [min, max]. Time is training steps only (no evaluation); "
        "'median step' is the median over epochs of each epoch's median step time, so periodic "
        "work (Shampoo's roots, K-FAC's inverses) shows in the total time, not in the median. "
        f"'to {ref}'s loss' is the training time at the end of the first epoch whose training loss is at or "
        f"below {ref}'s final one (epoch granularity, so an upper bound), and its ratio to {ref}'s total time; "
        "'–' where it is never reached.",
        "",
        "| method | lr | epochs | final train loss | best train loss | final test loss | "
        + "".join(f"final {m} | " for m in extras)
        + f"train time (s) | time / {ref} | median step (s) | step / {ref} | to {ref}'s loss (s) | "
        f"÷ {ref}'s time | status |",
        "|---|---|---|---|---|---|" + "---|" * len(extras) + "---|---|---|---|---|---|---|",
    ]
    d = 2 if cfg.get("workload", "autoencoder") == "autoencoder" else 5  # a workload's losses can be ~0.001
    for name, row in table.items():
        lr = ", ".join(f"{v:.3g}" for v in row["lr"])
        lines.append(
            f"| {name} | {lr} | {spread(row['epochs'], 0)} | {spread(row['final_train'], d)} | "
            f"{spread(row['best_train'], d)} | {spread(row['final_test'], d)} | "
            + "".join(f"{spread(row['extra'][m], 4)} | " for m in extras)
            + f"{spread(row['train_time'], 1)} | "
            f"{_ratio(row['time_vs_adam'])} | {spread(row['step_time'], 4)} | {_ratio(row['step_vs_adam'])} | "
            f"{spread(row['time_to_adam_loss'], 1)} | {_ratio(row['reach_vs_adam'])} | "
            f"{', '.join(row['status'])} |"
        )
    lines += _reach_lines(runs, list(table))
    lines += _sanity_lines(first)
    lines += ["", "Methods (hyper-parameters as run):", ""]
    for n, r in table.items():
        hp = first["methods"].get(n, {}).get("hparams")
        lines.append(f"- `{n}`: {r['summary']}" + (f"; `{hp}`" if hp else ""))
    if plots:
        _plot(runs, list(table), "epoch", out / "loss_vs_epoch.png", "epoch")
        _plot(runs, list(table), "train_time", out / "loss_vs_time.png", "training wall-clock (s)")
        lines += ["", "![loss against epoch](loss_vs_epoch.png)", "", "![loss against time](loss_vs_time.png)"]
    return save_report(out, lines)
