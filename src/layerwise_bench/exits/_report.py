"""Report of ``layerwise bench exits``: per weighting over seeds, the output's and the exits' validation loss at equal
steps and at equal wall-clock, stability, cost, the weights and the gradient cosines; the verdict learned vs fixed;
PNG plots."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ..core._plotting import distinct_colors, figure, save_png
from ..core._record import md_table, provenance, save_report, spread, stats

__all__ = ["FIXED", "LEARNED", "exits_summary", "write_exits_report"]

#: weightings whose weights are learned, and the fixed ones (the "tuned fixed weighting" is the best of these).
LEARNED = ("uncertainty", "gradnorm", "usefulness-cosine")
FIXED = ("equal", "fixed-0.03", "fixed-0.1", "fixed-0.3")


def _runs(results: dict[str, Any], method: str) -> list[dict[str, Any]]:
    return [results["runs"][f"{method}/{s}"] for s in results["seeds"] if f"{method}/{s}" in results["runs"]]


def _mean_exit(point: dict[str, Any]) -> float:
    return statistics.fmean(point["exit_val_loss"].values())


def exits_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per weighting, over its complete seeds: the output's validation loss at the end (``steps``) and at ``B``
    (``time``), the exits' mean (``exits_steps``, ``exits_time``), the shallowest exit's, spikes, divergences,
    training time against ``none`` and the mean gradient cosine of the exits with the output on the first block."""
    none_time = {r["seed"]: r["records"][-1]["train_time"] for r in _runs(results, "none") if r["status"] == "complete"}
    out: dict[str, dict[str, Any]] = {}
    for m in results["methods"]:
        runs = _runs(results, m)
        done = [r for r in runs if r["status"] == "complete"]
        cos = [
            statistics.fmean(r["telemetry"][-1]["cosine_with_main"]["block1"].values())
            for r in done
            if r.get("telemetry")
        ]
        out[m] = {
            "seeds": len(runs),
            "complete": len(done),
            "diverged": [f"seed {r['seed']}: {r.get('error', '')}" for r in runs if r["status"] == "diverged"],
            "steps": stats(r["records"][-1]["val_loss"] for r in done),
            "time": stats(r["at_budget"]["val_loss"] for r in done),
            "exits_steps": stats(_mean_exit(r["records"][-1]) for r in done),
            "exits_time": stats(_mean_exit(r["at_budget"]) for r in done),
            "exit1_steps": stats(r["records"][-1]["exit_val_loss"]["exit1"] for r in done),
            "spikes": sum(len(r["spikes"]) for r in runs),
            "time_vs_none": stats(
                r["records"][-1]["train_time"] / none_time[r["seed"]] for r in done if r["seed"] in none_time
            ),
            "steps_at_budget": stats(r["at_budget"]["step"] / r["records"][-1]["step"] for r in done),
            "before_budget": sum(bool(r["at_budget"].get("before_budget")) for r in done),
            "cosine": stats(cos),
            "by_seed": {
                key: {r["seed"]: point(r) for r in done}
                for key, point in (
                    ("steps", lambda r: r["records"][-1]["val_loss"]),
                    ("time", lambda r: r["at_budget"]["val_loss"]),
                    ("exits_steps", lambda r: _mean_exit(r["records"][-1])),
                    ("exits_time", lambda r: _mean_exit(r["at_budget"])),
                )
            },
        }
    return out


def _best(summary: dict[str, dict[str, Any]], names: tuple[str, ...], key: str) -> tuple[str, float]:
    scored = [(summary[n][key]["mean"], n) for n in names if n in summary and summary[n][key]["n"]]
    if not scored:
        return "–", float("nan")
    value, name = min(scored)
    return name, value


def _verdict(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key, what in (
        ("steps", "the output, equal steps"),
        ("time", "the output, equal wall-clock"),
        ("exits_steps", "the exits' mean, equal steps"),
        ("exits_time", "the exits' mean, equal wall-clock"),
    ):
        (ln, lv), (fn, fv) = _best(summary, LEARNED, key), _best(summary, FIXED, key)
        if ln == "–" or fn == "–":
            continue
        word = "beats" if lv < fv else "is behind"
        a, b = summary[ln]["by_seed"][key], summary[fn]["by_seed"][key]
        common = sorted(set(a) & set(b))
        lower = sum(a[sd] < b[sd] for sd in common)
        lines.append(
            f"- {what}: the best learned weighting ({ln}, {lv:.4f}) {word} the best fixed one ({fn}, {fv:.4f}) by "
            f"{abs(fv - lv):.4f} nats/byte ({abs(fv - lv) / fv:.1%}) on the means; lower in {lower} of "
            f"{len(common)} seeds."
        )
    return lines


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    seed = results["seeds"][0]
    runs = {m: results["runs"].get(f"{m}/{seed}") for m in results["methods"]}
    runs = {m: r for m, r in runs.items() if r and r["records"]}
    colors = distinct_colors(runs)
    fig, (a1, a2) = figure(2)
    for m, r in runs.items():
        a1.plot(
            [p["train_time"] for p in r["records"]],
            [p["val_loss"] for p in r["records"]],
            marker="o",
            ms=3,
            color=colors[m],
            label=m,
        )
        last = r["records"][-1]["exit_val_loss"]
        a2.plot(range(1, len(last) + 1), list(last.values()), marker="o", ms=3, color=colors[m], label=m)
    a1.set(xlabel="training wall-clock (s)", ylabel="output's validation loss (nats/byte)", title=f"seed {seed}")
    a2.set(xlabel="exit after block", ylabel="validation loss at the end (nats/byte)", title=f"seed {seed}")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    a1.legend(fontsize=7)
    save_png(fig, out / "curves.png")
    learned = {m: r for m, r in runs.items() if m in LEARNED}
    if not learned:
        return ["curves.png"]
    fig, axes = figure(len(learned), 4.5)
    for ax, (m, r) in zip(axes, learned.items(), strict=True):
        steps = [p["step"] for p in r["records"]]
        for t, c in distinct_colors(r["terms"]).items():
            ax.plot(steps, [p["weights"].get(t, float("nan")) for p in r["records"]], color=c, label=t)
        ax.set(xlabel="step", ylabel="weight", title=m, yscale="log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    save_png(fig, out / "weights.png")
    return ["curves.png", "weights.png"]


def write_exits_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``report.md``, ``curves.png`` and ``weights.png`` in ``out`` from the record's results."""
    out = Path(out)
    cfg, summary = results["config"], exits_summary(results)
    seeds = ", ".join(map(str, results["seeds"]))
    rows = [
        [
            f"`{m}`",
            f"{s['complete']}/{s['seeds']}",
            spread(s["steps"], 4),
            spread(s["time"], 4),
            spread(s["exits_steps"], 3),
            spread(s["exits_time"], 3),
            spread(s["exit1_steps"], 3),
            s["spikes"],
            spread(s["time_vs_none"], 2),
            spread(s["steps_at_budget"], 2) + (f" ({s['before_budget']} ended before B)" if s["before_budget"] else ""),
            spread(s["cosine"], 2),
        ]
        for m, s in summary.items()
    ]
    plots = _plots(results, out)
    lines = [
        "# Deep supervision on a byte-level LM: early exits through the shared head, weighted",
        "",
        *provenance(results, f"seeds {seeds}"),
        "",
        "## Setup",
        "",
        f"- Model: `ByteLM`, {cfg['depth']} pre-norm blocks of width {cfg['width']} ({cfg['heads']} heads), context "
        f"{cfg['context']}; an exit after each of the first {cfg['depth'] - 1} blocks through the model's own final "
        "LayerNorm and head (LayerSkip's design), tapped with `Taps`.",
        f"- Data: the Python standard library's sources (`lm-bytes`' corpus and split), {results['train_examples']} "
        f"training windows, {results['test_examples']} validation windows.",
        f"- Training: AdamW lr {cfg['lr']:g} (constant), weight decay {cfg['weight_decay']:g}, batch "
        f"{cfg['batch_size']}, {cfg['epochs']} epochs; the same init and batch order per seed for every weighting.",
        "- Equal steps: the end of the run. Equal wall-clock: the evaluation (off the clock) the moment a run's "
        "training time passes B, the same seed's `none` run's training time (with a constant rate, where a run "
        "stopped at B would be; LayerSkip's curriculum is scheduled on the whole run, so at B it is part-way). A run "
        "that ends before B is scored at its end.",
        f"- Spikes: steps whose output loss exceeds {cfg['spike']:g}× the median of the previous 50. Cosines: each "
        f"exit's gradient with the output's on the first block, every {cfg['telemetry_every']} steps "
        "(`GradientTelemetry`, off the clock), the last measurement.",
        "",
        "## Results",
        "",
        "Validation loss in nats per byte, mean [min, max] over the seeds.",
        "",
        *md_table(
            [
                "weighting",
                "complete",
                "output, equal steps",
                "output, at B",
                "exits' mean, equal steps",
                "exits' mean, at B",
                "first exit, equal steps",
                "spikes",
                "time ÷ none",
                "steps by B ÷ steps",
                "cos(exit, output)",
            ],
            rows,
        ),
        "",
        "## Learned against fixed weights",
        "",
        f"Learned: {', '.join(LEARNED)}. Fixed: {', '.join(FIXED)} (the best of them is the tuned fixed weighting).",
        "",
        *_verdict(summary),
        "",
        *(
            [f"- `{m}` diverged: {'; '.join(s['diverged'])}" for m, s in summary.items() if s["diverged"]]
            or ["- Every weighting completed every seed."]
        ),
        "",
        "## Weightings",
        "",
        *[f"- `{m}`: {d}" for m, d in results["descriptions"].items()],
        "",
        *[f"![{p}]({p})" for p in plots],
    ]
    return save_report(out, lines)
