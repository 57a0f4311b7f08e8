"""Report of ``layerwise bench aux``: a Markdown table over seeds, the acceptance verdict, and PNG plots."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..core._plotting import distinct_colors, figure, save_png
from ..core._record import fmt, save_report
from ._report import curves, header, log_plot, median

__all__ = ["LEARNED", "aux_summary", "write_aux_report"]

#: weightings whose weights are learned (naive is the documented ablation, not a candidate).
LEARNED = ("uncertainty", "gradnorm", "usefulness-lookahead", "usefulness-cosine")
_WEIGHT_PLOTS = ("naive", *LEARNED)


def _epochs_to(records: list[dict[str, Any]], target: float, key: str = "epoch") -> float:
    """The first epoch (or training time) at whose end the test accuracy is >= target; inf when never."""
    return next((float(r[key]) for r in records if r["test_acc"] >= target), math.inf)


def _entries(results: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The runs of ``method``, seed by seed."""
    return [results["runs"][f"{method}/{s}"] for s in results["seeds"] if f"{method}/{s}" in results["runs"]]


def aux_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method, over its seeds: final loss and accuracy, epochs and time to the target, time per epoch."""
    target = results["config"]["target_acc"]
    table: dict[str, dict[str, Any]] = {}
    for method in results["methods"]:
        entries = _entries(results, method)
        done = [e for e in entries if e["status"] == "complete"]
        recs = [e["records"] for e in done if e["records"]]
        table[method] = {
            "seeds": len(entries),
            "complete": len(done),
            "status": sorted({e["status"] for e in entries}),
            "final_loss": median([r[-1]["train_main_loss"] for r in recs]),
            "final_acc": [r[-1]["test_acc"] for r in recs],
            "epochs_to_target": [_epochs_to(e["records"], target) for e in entries if e["status"] != "running"],
            "time_to_target": [
                _epochs_to(e["records"], target, "train_time") for e in entries if e["status"] != "running"
            ],
            "epoch_time": median([r[-1]["train_time"] / r[-1]["epoch"] for r in recs]),
            "useless": sorted({w["message"].split(":")[0] for e in entries for w in e.get("useless_warnings", [])}),
        }
    base = table.get("none", {}).get("epoch_time", math.nan)
    for row in table.values():
        row["time_vs_none"] = row["epoch_time"] / base if base == base and base > 0 else math.nan
    return table


def _epochs_text(values: list[float]) -> str:
    if not values:
        return "–"
    med = median(values)
    each = ", ".join("–" if math.isinf(v) else f"{v:g}" for v in values)
    return f"{'not reached' if math.isinf(med) else f'{med:g}'} ({each})"


def _acc_text(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.fmean(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def verdict(table: dict[str, dict[str, Any]], target: float) -> list[str]:
    """The acceptance criterion: does the best learned weighting reach the target in fewer epochs than
    ``none`` and than ``equal``, over the seeds (median, and seed by seed)?"""
    learned = [m for m in LEARNED if m in table and table[m]["epochs_to_target"]]
    if not learned or "none" not in table or "equal" not in table:
        return ["Acceptance: not evaluated (it needs `none`, `equal` and at least one learned weighting)."]

    def key(m: str) -> tuple[float, float]:
        accs = table[m]["final_acc"]
        return median(table[m]["epochs_to_target"]), -(statistics.fmean(accs) if accs else 0.0)

    best = min(learned, key=key)
    b = table[best]["epochs_to_target"]
    lines = [
        f"Acceptance (issue 4, item 6): best learned weighting by median epochs to {target:g} test accuracy "
        f"(ties: higher mean final accuracy): `{best}`, {_epochs_text(b)} epochs."
    ]
    ok_all = True
    for ref in ("none", "equal"):
        r = table[ref]["epochs_to_target"]
        med_b, med_r = median(b), median(r)
        fewer = med_b < med_r
        per_seed = len(b) == len(r) and all(x < y for x, y in zip(b, r, strict=True))
        ok_all = ok_all and fewer
        lines.append(
            f"- against `{ref}` ({_epochs_text(r)}): median {'FEWER' if fewer else 'NOT fewer'} epochs; "
            f"fewer in every seed: {'yes' if per_seed else 'no'}."
        )
    lines.append(
        f"**Verdict: the best learned weighting {'DOES' if ok_all else 'does NOT'} reach the target in fewer "
        "epochs than both `none` and `equal` (median over seeds).**"
    )
    return lines


def _median_curve(results: dict[str, Any], method: str, y: str) -> tuple[list[float], list[float], list[float]]:
    """Epoch by epoch over the seeds' common epochs: the median epoch, training time and ``y``."""
    recs = [e["records"] for e in _entries(results, method) if e["records"]]
    n = min((len(r) for r in recs), default=0)
    epochs, times, ys = ([median([r[i][k] for r in recs]) for i in range(n)] for k in ("epoch", "train_time", y))
    return epochs, times, ys


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    methods, target = results["methods"], results["config"]["target_acc"]
    colors = distinct_colors(methods)
    curve = {m: _median_curve(results, m, "test_acc") for m in methods}
    curves(out / "test_acc.png", curve, colors, "test accuracy of the main output (median over seeds)", target=target)
    losses = {m: _median_curve(results, m, "train_main_loss") for m in methods}
    lines = [(losses[m][0], losses[m][2], {"ms": 3, "color": colors[m], "label": m}) for m in methods]
    ylabel = "training main loss (epoch mean, median over seeds)"
    log_plot(out / "train_loss.png", lines, dpi=100, xlabel="epoch", ylabel=ylabel)
    files = ["test_acc.png", "train_loss.png"]
    shown = [m for m in _WEIGHT_PLOTS if m in methods]
    if shown:
        fig, axes = figure(len(shown), 4.0)
        for ax, m in zip(axes, shown, strict=True):
            entries = _entries(results, m)
            rows = [e["weights"] for e in entries if e["weights"]]
            traces = [e["trace"] for e in entries if e.get("trace")]
            if rows:
                n = min(len(r) for r in rows)
                for t, color in distinct_colors(rows[0][0]).items():
                    ys = [median([r[i][t] for r in rows]) for i in range(n)]
                    ax.plot(range(1, n + 1), ys, marker="o", ms=3, color=color, label=t)
                ax.set(title=m, xlabel="epoch", ylabel="weight (epoch mean, median over seeds)")
            elif traces:  # diverged within its first epoch: the weights step by step, first seed
                tr = [t for t in traces[0] if t["weights"]]
                for t, color in distinct_colors(tr[0]["weights"] if tr else {}).items():
                    ys = [x["weights"][t] for x in tr]
                    ax.plot([x["step"] for x in tr], ys, marker="o", ms=3, color=color, label=t)
                ax.set(
                    title=f"{m} (diverged; seed {entries[0]['seed']})",
                    xlabel=f"step of epoch {traces[0][0]['epoch']}",
                    ylabel="weight",
                    yscale="symlog",
                )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save_png(fig, out / "weights.png")
        files.append("weights.png")
    return files


def _trace_line(e: dict[str, Any]) -> str:
    """A diverged run's trace: the weights and the auxiliary losses at a few steps before the failure."""
    rows = []
    for t in e["trace"]:
        aux = ", ".join(f"{k} {v:.3g}" for k, v in t["losses"].items() if k != "main")
        ws = ", ".join(f"{k} {v:.3g}" for k, v in t["weights"].items() if k != "main")
        rows.append(
            f"step {t['step']}: main loss {t['losses'].get('main', math.nan):.3g}; aux losses {aux}; weights {ws}"
        )
    return "  - " + "\n  - ".join(rows)


def _naive_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for e in _entries(results, "naive"):
        if e.get("trace"):
            lines.append(
                f"- seed {e['seed']} ({e['status']}: {e.get('error', '')}); {len(e['records'])} complete "
                f"epoch(s); the steps of epoch {e['trace'][0]['epoch']} before the failure:"
            )
            lines.append(_trace_line(e))
            continue
        recs, ws = e["records"], e["weights"]
        weights = e.get("final_weights") or e.get("at_divergence", {}).get("weights") or (ws[-1] if ws else {})
        aux = (
            {t: f"{recs[0]['aux_losses'][t]:.3g} -> {recs[-1]['aux_losses'][t]:.3g}" for t in recs[0]["aux_losses"]}
            if recs
            else {}
        )
        w_text = ", ".join(f"{t} {v:.3g}" for t, v in weights.items())
        lines.append(
            f"- seed {e['seed']} ({e['status']}{': ' + e['error'] if e.get('error') else ''}): final "
            f"weights {w_text}; auxiliary losses, epoch 1 -> {len(recs)}: "
            + (", ".join(f"{t} {v}" for t, v in aux.items()) or "–")
        )
    return lines


def write_aux_report(results: dict[str, Any], out: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and ``test_acc.png``, ``train_loss.png``, ``weights.png``) into ``out``."""
    out = Path(out)
    cfg = results["config"]
    table = aux_summary(results)
    target = cfg["target_acc"]
    seeds = f"seeds {results['seeds']}"
    opt = (f"SGD, momentum {cfg['momentum']}" if cfg["optimizer"] == "sgd" else "Adam") + f", lr {cfg['lr']:g}"
    setup = [
        f"- Model: {cfg['depth']} hidden layers `tanh(Linear)` of width {cfg['width']}, then a linear output; "
        "no residual connection, no normalisation, PyTorch's default initialisation (the trunk's initial "
        "weights depend on the seed only, identical for every method).",
        f"- Deep supervision: {cfg['heads']} `LocalClassifier` heads (linear probe + cross-entropy) tapped with "
        "`Taps` after evenly spaced hidden layers (`auxN` = after hidden layer N); the main term is the "
        "cross-entropy of the model's output.",
        f"- Optimizer: {opt}, batch {cfg['batch_size']}, {cfg['epochs']} epochs; every method's update is "
        "`layerwise.backward(losses, weighting, params=model+heads)` then `optimizer.step()`.",
        f"- Target: {target:g} test accuracy of the main output (a plain forward of the model), checked at the "
        "end of every epoch.",
    ]
    lines = [
        *header(f"Weighting deep-supervision losses: deep plain tanh MLP, {cfg['dataset']}", results, seeds, setup),
        "",
        "## Results",
        "",
        "Final train loss: training main loss (mean over the last epoch's batches), median over seeds. Final "
        "test accuracy: mean [min, max] over seeds. Epochs to target: median over seeds (each seed in "
        "parentheses, '–' = not reached). Time / epoch: median training seconds per epoch (no evaluation), "
        "relative to `none`.",
        "",
        "| method | final train loss | final test accuracy | epochs to target | time to target (s, median) | "
        "time / epoch (s) | × none | seeds complete | useless-term warnings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, row in table.items():
        tt = median(row["time_to_target"])
        tt_text = "–" if not tt == tt else ("not reached" if math.isinf(tt) else f"{tt:.0f}")
        lines.append(
            f"| {m} | {fmt(row['final_loss'], 4)} | {_acc_text(row['final_acc'])} | "
            f"{_epochs_text(row['epochs_to_target'])} | {tt_text} | {fmt(row['epoch_time'], 2)} | "
            f"{fmt(row['time_vs_none'], 2)} | {row['complete']}/{row['seeds']} "
            f"({', '.join(row['status'])}) | {', '.join(row['useless']) or '–'} |"
        )
    lines += ["", *verdict(table, target)]
    if "naive" in table:
        lines += [
            "",
            "`naive` (the seed's literal recipe, an ablation): weights trained by the model's optimizer on "
            "the total only decrease, go negative, and the optimizer then maximises the auxiliary losses:",
            "",
            *_naive_lines(results),
        ]
    lines += ["", "Learned weights at the end (median over seeds; per-epoch means in results.json):", ""]
    for m in results["methods"]:
        finals = [e["final_weights"] for e in _entries(results, m) if e.get("final_weights")]
        if finals and m != "none":
            lines.append(f"- `{m}`: " + ", ".join(f"{t} {median([f[t] for f in finals]):.3g}" for t in finals[0]))
    lines += ["", "Methods:", ""] + [f"- `{m}`: {d}" for m, d in results.get("descriptions", {}).items()]
    if plots:
        files = _plots(results, out)
        lines += [""] + [f"![{f[:-4]}]({f})" for f in files]
    return save_report(out, lines)
