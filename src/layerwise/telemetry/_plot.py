"""PNG plots of a telemetry history (matplotlib, imported lazily; no pyplot state, no backend switch)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._snapshot import Snapshot

__all__ = ["plot_history"]


def _figure(**kw: Any) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("GradientTelemetry.plot needs matplotlib: pip install 'layerwise[bench]'") from exc
    return Figure(layout="constrained", **kw)


def _save(fig: Any, out: Path, name: str) -> Path:
    path = out / (re.sub(r"[^\w.-]", "_", name) + ".png")
    fig.savefig(path, dpi=110)
    return path


def _norms(history: Sequence[Snapshot], s: str, out: Path) -> Path:
    fig = _figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    steps = [snap.step for snap in history]
    drawn = 0
    for t in history[-1].terms:
        ys = [snap.norms[s][t] for snap in history]
        if any(y > 0 for y in ys):  # terms that never reach the set have no line on a log scale
            ax.plot(steps, [y if y > 0 else math.nan for y in ys], marker="." if len(steps) <= 30 else None, label=t)
            drawn += 1
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no term reaches this set", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="step", ylabel=f"‖∇ loss term‖ on {s!r}", title=f"per-term gradient norms, set {s!r}")
    return _save(fig, out, f"norms_{s}")


def _weights(history: Sequence[Snapshot], out: Path) -> Path:
    fig = _figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    weighted = [snap for snap in history if snap.weights is not None]
    for t in history[-1].terms:
        ax.plot([snap.step for snap in weighted], [snap.weights[t] for snap in weighted if snap.weights], label=t)
    ax.set(xlabel="step", ylabel="weight", title="loss weights")
    ax.legend(fontsize="small")
    return _save(fig, out, "weights")


def _cosines(history: Sequence[Snapshot], s: str, out: Path) -> Path:
    terms = history[-1].terms
    k = len(terms)
    last = history[-1].cosines[s]
    mean = [[sum(snap.cosines[s][i][j] for snap in history) / len(history) for j in range(k)] for i in range(k)]
    fig = _figure(figsize=(4.0 + 0.5 * k, 2.4 + 0.25 * k))
    axes = fig.subplots(1, 2)
    image = None
    for ax, matrix, title in (
        (axes[0], last, f"step {history[-1].step}"),
        (axes[1], mean, f"mean of {len(history)} snapshots"),
    ):
        image = ax.imshow(matrix, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
        ax.set_xticks(range(k), terms, rotation=45, ha="right", fontsize="small")
        ax.set_yticks(range(k), terms, fontsize="small")
        ax.set_title(title, fontsize="medium")
        if k <= 10:
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        f"{matrix[i][j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="white" if abs(matrix[i][j]) > 0.6 else "black",
                    )
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.suptitle(f"gradient cosines, set {s!r}")
    return _save(fig, out, f"cosines_{s}")


def plot_history(history: Sequence[Snapshot], out_dir: str | Path) -> list[Path]:
    """Write ``norms_<set>.png`` and ``cosines_<set>.png`` per set, and ``weights.png`` if weights were recorded."""
    if not history:
        raise ValueError("Nothing to plot: no snapshot was recorded (keep_history=False, or no step was due yet).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_norms(history, s, out) for s in history[-1].sets]
    if any(snap.weights is not None for snap in history):
        paths.append(_weights(history, out))
    paths += [_cosines(history, s, out) for s in history[-1].sets]
    return paths
