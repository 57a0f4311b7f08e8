"""Report of ``layerwise bench depth``: per (depth, activation) a table and plots, and the two acceptance items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core._plotting import distinct_colors, figure, save_png
from ..core._record import fmt, save_report
from ._depth_methods import grad_ratio
from ._report import curves, header, log_plot

__all__ = ["acceptance", "write_depth_report"]

POINTS = {"first_step": "after the first step", "epoch_1": "end of epoch 1", "end": "end of training"}
BASELINES = ("bp-default-sgd", "bp-glorot-adam", "bp-orthogonal-adam", "bp-critical-adam")


def _groups(results: dict[str, Any]) -> list[tuple[int, str]]:
    """(depth, activation) pairs that have runs, deepest last, sigmoid before tanh."""
    keys = {(int(k.split("/")[0]), k.split("/")[1]) for k in results["runs"]}
    return sorted(keys)


def _run(results: dict[str, Any], depth: int, act: str, method: str) -> dict[str, Any] | None:
    return results["runs"].get(f"{depth}/{act}/{method}")


def _ratio_text(g: dict[str, Any] | None) -> str:
    if not g:
        return "–"
    if g["ratio"] is None:
        return f"∞ ({g['zero_layers']} of {len(g['norms'])} layers exactly 0)" if g["zero_layers"] else "–"
    return f"{g['ratio']:.3g}"


def _table(results: dict[str, Any], depth: int, act: str) -> list[str]:
    lines = [
        "| method | status | epochs | final train loss | final train acc | test acc | time (s) | "
        + " | ".join(f"grad ratio max/min, {p}" for p in POINTS.values())
        + " | z store (MiB) |",
        "|---|---|---|---|---|---|---|" + "---|" * len(POINTS) + "---|",
    ]
    for m in results["methods"]:
        e = _run(results, depth, act, m)
        if e is None:
            continue
        r = e["records"][-1] if e["records"] else {}
        z = f"{e['z_bytes'] / 2**20:.1f}" if "z_bytes" in e else "–"
        lines.append(
            f"| {m} | {e['status']} | {len(e['records'])} | {fmt(r.get('train_loss'), 4)} | "
            f"{fmt(r.get('train_acc'), 4)} | {fmt(r.get('test_acc'), 4)} | "
            f"{fmt(r.get('train_time'), 1)} | "
            + " | ".join(_ratio_text(e["grad_norms"].get(p)) for p in POINTS)
            + f" | {z} |"
        )
    return lines


def _ratio_at(e: dict[str, Any] | None, point: str) -> str:
    if e is None:
        return "not run"
    return _ratio_text(e["grad_norms"].get(point))


DECOUPLED = ("decoupled", "decoupled-forward")


def ratio_without_penalty(e: dict[str, Any], point: str) -> dict[str, Any] | None:
    """The ratio of a decoupled run with μ divided out of the hidden blocks: ‖∂L_h/∂θ_t‖ for the hidden
    blocks, ‖∂L_y/∂θ_T‖ for the output block. μ is the one recorded with the probe, else (records made
    before it was) the μ recorded with the epoch the probe ends (epoch 1, or the last)."""
    g = e["grad_norms"].get(point)
    if not g or not g["norms"]:
        return None
    mu = g.get("mu")
    if mu is None and point in ("epoch_1", "end") and e["records"]:
        mu = e["records"][0 if point == "epoch_1" else -1].get("mu")
    if not mu:
        return None
    return grad_ratio([v / mu for v in g["norms"][:-1]] + [g["norms"][-1]])


def epoch_ratios(e: dict[str, Any] | None, limit: float = 100.0) -> tuple[str, bool] | None:
    """The gradient-norm ratio at every epoch end (``records[i]["grad_ratio"]``): a summary text, and
    whether every epoch end is within ``limit``. None for records made before it was recorded."""
    if e is None or not e["records"] or any("grad_ratio" not in r for r in e["records"]):
        return None
    rs = e["records"]
    zero = [r["epoch"] for r in rs if r["grad_ratio"] is None]
    finite = [(r["grad_ratio"], r["epoch"]) for r in rs if r["grad_ratio"] is not None]
    within = sum(1 for v, _ in finite if v <= limit)
    worst = (
        f"∞ (a layer exactly 0 at epoch {', '.join(map(str, zero))})"
        if zero
        else "{:.3g} (epoch {})".format(*max(finite))
    )
    return f"max over the {len(rs)} epoch ends {worst}, within {limit:g}× at {within} of {len(rs)}", within == len(rs)


def acceptance(results: dict[str, Any]) -> list[str]:
    """Plain-language verdicts of issue 5's two benchmark acceptance items, with the numbers."""
    lines = ["**(a) Depth 50: decoupled per-layer gradient-norm ratio max/min within 100×?**", ""]
    deep = [(d, a) for d, a in _groups(results) if d == 50]
    if not deep:
        lines.append("- Not measured: no depth-50 run in this record.")
    for (d, a), variant in ((g, v) for g in deep for v in DECOUPLED):
        e = _run(results, d, a, variant)
        if e is None:
            lines.append(f"- depth {d} {a}: {variant} not run.")
            continue
        every = epoch_ratios(e)
        if every is None:  # a record from before the per-epoch probe: the end of training decides
            end = e["grad_norms"].get("end")
            verdict = "YES" if end and end["ratio"] is not None and end["ratio"] <= 100 else "NO"
            ok = [
                POINTS[p]
                for p in ("epoch_1", "end")
                if (e["grad_norms"].get(p) or {}).get("ratio") is not None and e["grad_norms"][p]["ratio"] <= 100
            ]
            claim, per_epoch = "within 100× at the end", ""
            detail = f" (within 100× at: {', '.join(ok) or 'no fixed point'})"
        else:
            verdict = "YES" if every[1] else "NO"
            claim, per_epoch, detail = "within 100× at every epoch end", f"; {every[0]}", ""
        base = "; ".join(
            f"{b} {_ratio_at(_run(results, d, a, b), 'epoch_1')} / {_ratio_at(_run(results, d, a, b), 'end')}"
            + (f" ({r[0]})" if (r := epoch_ratios(_run(results, d, a, b))) else "")
            for b in BASELINES
        )
        lines.append(
            f"- depth {d} {a}: {variant} ratio after the first step {_ratio_at(e, 'first_step')}, end of "
            f"epoch 1 {_ratio_at(e, 'epoch_1')}, end of training {_ratio_at(e, 'end')}{per_epoch} → {claim}: "
            f"**{verdict}**{detail}. "
            f"Backprop baselines (epoch 1 / end): {base}."
        )
        plain = {p: ratio_without_penalty(e, p) for p in ("epoch_1", "end")}
        if all(plain.values()):
            lines.append(
                f"  - The same with μ divided out of the hidden blocks (‖∂L_h/∂θ_t‖, and ‖∂L_y/∂θ_T‖ for the "
                f"output block: μ weights every hidden term alike and grows over training, the output term "
                f"not): end of epoch 1 {_ratio_text(plain['epoch_1'])}, end of training "
                f"{_ratio_text(plain['end'])}."
            )
    lines += ["", "**(b) Depth-20 sigmoid: decoupled ≥ 95% training accuracy; backprop on the same budget?**", ""]
    runs = {m: _run(results, 20, "sigmoid", m) for m in results["methods"]}
    if all(v is None for v in runs.values()):
        lines.append("- Not measured: no depth-20 sigmoid run in this record.")
        return lines
    for m, e in runs.items():
        if e is None or not e["records"]:
            continue
        lines.append(accuracy_line(m, e["records"]))
    backprop = [b for b in BASELINES if (e := runs.get(b)) and e["records"] and e["records"][-1]["train_acc"] >= 0.95]
    also = f"backprop baselines that reach it: {', '.join(backprop)}" if backprop else "no backprop baseline reaches it"
    for variant in DECOUPLED:
        dec = runs.get(variant)
        if dec and dec["records"]:
            reached = dec["records"][-1]["train_acc"] >= 0.95
            lines.append(
                f"- Verdict: {variant} **{'reaches' if reached else 'does NOT reach'}** 95% training "
                f"accuracy on this budget; {also} (Glorot + Adam "
                f"{'included' if 'bp-glorot-adam' in backprop else 'does not'})."
            )
    return lines


def accuracy_line(method: str, records: list[dict[str, Any]], target: float = 0.95) -> str:
    """Item (b)'s line for one method: final and best training accuracy, the first epoch at ``target``, and
    how many of the last 10 epochs are at it (the curve of an Adam run moves by a point or two per epoch)."""
    best, final = max(r["train_acc"] for r in records), records[-1]["train_acc"]
    first = next((r["epoch"] for r in records if r["train_acc"] >= target), None)
    last = records[-10:]
    above = sum(r["train_acc"] >= target for r in last)
    head = (
        f"- {method}: final training accuracy {final:.4f} (best epoch {best:.4f}) after {len(records)} "
        f"epoch(s), {records[-1]['train_time']:.0f} s → {'reaches' if final >= target else 'does NOT reach'} "
        f"{target:.0%} at the end; "
    )
    return head + (
        f"first ≥ {target:.0%} at epoch {first}, {above} of the last {len(last)} epochs ≥ {target:.0%}."
        if first is not None
        else f"no epoch ≥ {target:.0%}."
    )


def _plots(results: dict[str, Any], out: Path, depth: int, act: str) -> list[str]:
    tag = f"d{depth}_{act}"
    entries = [(m, e) for m in results["methods"] if (e := _run(results, depth, act, m)) is not None]
    colors = distinct_colors(results["methods"])
    series = {m: tuple([r[k] for r in e["records"]] for k in ("epoch", "train_time", "train_loss")) for m, e in entries}
    ylabel = "training loss of the plain network"
    files = [curves(out / f"loss_{tag}.png", series, colors, ylabel, title=f"depth {depth}, {act}", dpi=90)]
    fig, axes = figure(len(POINTS), 5.0)
    for ax, (p, label) in zip(axes, POINTS.items(), strict=True):
        for m, e in entries:
            g = e["grad_norms"].get(p)
            if g:
                layers = [t + 1 for t, v in enumerate(g["norms"]) if v > 0]
                ax.plot(layers, [v for v in g["norms"] if v > 0], marker="o", ms=2, color=colors[m], label=m)
        ax.set(
            xlabel="Linear layer (1 = input side)",
            ylabel="‖∂L/∂W_t‖ (0 not drawn)",
            yscale="log",
            title=f"depth {depth} {act}: {label}",
        )
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    files.append(f"grads_{tag}.png")
    save_png(fig, out / files[-1], dpi=90)
    ratios = []
    for m, e in entries:
        if epoch_ratios(e) is not None:
            recs = e["records"]
            inf = sum(r["grad_ratio"] is None for r in recs)
            ys = [r["grad_ratio"] if r["grad_ratio"] is not None else float("nan") for r in recs]
            label = m + (f" (∞ at {inf} of {len(recs)})" if inf else "")
            ratios.append(([r["epoch"] for r in recs], ys, {"ms": 3, "color": colors[m], "label": label}))
    if ratios:
        title = f"depth {depth} {act}: gradient-norm ratio at each epoch end"
        ylabel = "max/min over layers of ‖∂L/∂W_t‖"
        files.append(
            log_plot(out / f"ratio_{tag}.png", ratios, hline=(100, "100×"), xlabel="epoch", ylabel=ylabel, title=title)
        )
    dec = _run(results, depth, act, "decoupled")
    if dec and dec["records"] and "feasibility_gap" in dec["records"][0]:
        gaps = [
            (
                range(1, len(r["feasibility_gap"]) + 1),
                [max(v, 1e-12) for v in r["feasibility_gap"]],
                {"ms": 2, "label": f"epoch {r['epoch']}"},
            )
            for r in dec["records"]
        ]
        ylabel = "feasibility gap rms ‖z_t − f_t(z_{t−1})‖ (floor 1e-12)"
        files.append(
            log_plot(
                out / f"gap_{tag}.png",
                gaps,
                xlabel="hidden layer t",
                ylabel=ylabel,
                title=f"decoupled, depth {depth} {act}",
            )
        )
    return files


def write_depth_report(results: dict[str, Any], out: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and per (depth, activation) ``loss_*.png``, ``grads_*.png``, ``ratio_*.png``,
    ``gap_*.png``) into ``out``."""
    out = Path(out)
    cfg = results["config"]
    setup = [
        f"- Model: `depth` hidden layers `act(Linear)` of width {cfg['width']}, then a linear output (depth + 1 "
        f"Linear layers); no residual connection, no normalisation; {cfg.get('dtype', 'float32')} data and "
        "parameters.",
        f"- Budget: {cfg['epochs']} epoch(s) of batch {cfg['batch_size']} for every method.",
        f"- Train loss / accuracy: the PLAIN forward network on the first {cfg['eval_examples']} training "
        "examples, at the end of each epoch; test accuracy on the whole test set. Time: cumulative training "
        "wall-clock (no evaluation or probes; includes the z initialisation and the consistency step).",
        f"- Gradient norms ‖∂L/∂W_t‖ of each Linear's weight on a fixed probe batch (the first "
        f"{cfg['probe_examples']} training examples), without updating: L is the global loss for backprop and "
        "LocoProp, main + heads for deep supervision, and block t's OWN term of eq. (3) for decoupled, at the z its "
        "θ-step would fit on that batch (`DecoupledTrainer.targets`). With stored z, after the first step the "
        "hidden terms are exactly 0 for every row the first batch did not touch (z comes from a forward pass), "
        "so the ratio there can be ∞ by construction: read the later fixed points.",
    ]
    title = f"Deep plain MLPs: backprop baselines, decoupled training, LocoProp, deep supervision ({cfg['dataset']})"
    lines = [
        *header(title, results, f"seed {cfg['seed']}", setup),
        "",
        "Methods:",
        "",
        *[f"- `{m}`: {d}" for m, d in results.get("descriptions", {}).items()],
        "",
        "## Acceptance (issue 5)",
        "",
        *acceptance(results),
        "",
    ]
    for depth, act in _groups(results):
        lines += [f"## Depth {depth}, {act}", "", *_table(results, depth, act), ""]
        if plots:
            lines += [f"![{f[:-4]}]({f})" for f in _plots(results, out, depth, act)] + [""]
        errors = [
            f"- `{m}`: {e['error']}"
            for m in results["methods"]
            if (e := _run(results, depth, act, m)) and e.get("error")
        ]
        if errors:
            lines += ["Diverged:", "", *errors, ""]
    return save_report(out, lines)
