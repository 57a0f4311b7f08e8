"""Slowed runs in a timed record: a run is *slowed* when its median step time exceeds ``SLOW_TOLERANCE`` times the
median over its method's runs (at least ``MIN_RUNS`` of them); at equal wall-clock it would score worse for a
reason that is not the method's."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

__all__ = ["MIN_RUNS", "SLOW_TOLERANCE", "method_step_times", "run_step_time", "slowed_runs"]

SLOW_TOLERANCE = 1.10
"""A run is slowed when its median step time is more than this times its method's median (most runs of a method
agree within ±5% on an idle machine)."""

MIN_RUNS = 3
"""Fewest runs of a method whose median a run is judged against."""


def run_step_time(entry: Mapping[str, Any]) -> float | None:
    """A run's step time: the median over its records of each epoch's median step time (None without records)."""
    times = [r["step_time_median"] for r in entry.get("records") or [] if r.get("step_time_median") is not None]
    return float(statistics.median(times)) if times else None


def method_step_times(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[float]]:
    """Each method's run step times over the complete runs of a record (the reference run included)."""
    out: dict[str, list[float]] = {}
    for entry in runs.values():
        t = run_step_time(entry) if entry.get("status") == "complete" else None
        if t is not None:
            out.setdefault(entry["method"], []).append(t)
    return out


def slowed_runs(
    runs: Mapping[str, Mapping[str, Any]],
    *,
    pooled: Mapping[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """The slowed runs by key, with ``step_time_s`` and the method's ``method_median_s``; a method with fewer than
    ``MIN_RUNS`` runs is judged with its runs in ``pooled`` (another record on the same machine) added."""
    own = method_step_times(runs)
    slowed: dict[str, dict[str, float]] = {}
    for key, entry in runs.items():
        t = run_step_time(entry) if entry.get("status") == "complete" else None
        if t is None:
            continue
        times = own[entry["method"]]
        if len(times) < MIN_RUNS:
            times = times + list((pooled or {}).get(entry["method"], []))
        if len(times) < MIN_RUNS:
            continue
        median = float(statistics.median(times))
        if t > SLOW_TOLERANCE * median:
            slowed[key] = {"step_time_s": t, "method_median_s": median}
    return slowed
