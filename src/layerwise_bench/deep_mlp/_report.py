"""The report shape of the deep-MLP benchmarks: header, table cells, medians, and curves against epochs and time."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core._plotting import figure, save_png
from ..core._record import provenance

__all__ = ["curves", "header", "log_plot", "median"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def header(title: str, results: dict[str, Any], seeds: str, setup: list[str]) -> list[str]:
    """The title, how the record was made (:func:`provenance`) and the setup's bullets."""
    return [f"# {title}", "", *provenance(results, seeds), "", "## Setup", "", *setup]


def curves(
    path: Path,
    series: Mapping[str, Sequence[Sequence[Any]]],
    colors: dict[str, str],
    ylabel: str,
    *,
    title: str | None = None,
    target: float | None = None,
    dpi: int = 100,
) -> str:
    """Two panels, ``label -> (epochs, training times, values)`` against epochs and against training wall-clock;
    a ``title`` puts the values on a log scale, a ``target`` draws a dotted line. Returns the file name."""
    fig, (a1, a2) = figure(2)
    for m, (epochs, times, ys) in series.items():
        for ax, xs in ((a1, epochs), (a2, times)):
            ax.plot(xs, ys, marker="o", ms=3, color=colors[m], label=m)
    for ax, xl in ((a1, "epoch"), (a2, "training wall-clock (s)")):
        if target is not None:
            ax.axhline(target, color="k", ls=":", lw=1)
        ax.set(xlabel=xl, ylabel=ylabel, **({} if title is None else {"yscale": "log", "title": title}))
        ax.grid(alpha=0.3, which="major" if title is None else "both")
    a1.legend(fontsize=7)
    save_png(fig, path, dpi=dpi)
    return path.name


def log_plot(
    path: Path, lines: Sequence[tuple[Sequence[Any], Sequence[Any], dict[str, Any]]], *, dpi: int = 90, **labels: Any
) -> str:
    """One panel of lines ``(xs, ys, plot options)`` on a log scale, ``labels`` set on the axes (``hline``: a dashed
    line ``(y, label)``); returns the file name."""
    hline = labels.pop("hline", None)
    fig, (ax,) = figure(1, 7.0)
    for xs, ys, opts in lines:
        ax.plot(xs, ys, marker="o", **opts)
    if hline is not None:
        ax.axhline(hline[0], color="k", ls="--", lw=1, label=hline[1])
    ax.set(**labels, yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_png(fig, path, dpi=dpi)
    return path.name
