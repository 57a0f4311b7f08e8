"""Slowed runs in a timed record: a run whose steps took clearly longer than the same method's other runs.

On a shared or thermally throttled machine one run can be slowed as a whole (seed 0 of the equal-time record
had a Muon run 16% and a SOAP run 25% slower than the method's other runs, with nothing else running). At equal
wall-clock a slowed run does fewer steps and scores worse for a reason that is not the method's. A method's
step time does not depend on its learning rate or the budget, so its runs measure the same thing: a run is
*slowed* when its median step time exceeds ``SLOW_TOLERANCE`` times the median over the method's runs (at least
``MIN_RUNS`` of them, else it cannot be judged).
"""

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
    tolerance: float = SLOW_TOLERANCE,
) -> dict[str, dict[str, float]]:
    """The slowed runs of a record by key, each with its ``step_time_s`` and its method's ``method_median_s``.

    A method with fewer than ``MIN_RUNS`` runs in ``runs`` is judged against those runs and its runs in
    ``pooled`` together (the step times of another record on the same machine, e.g. the seed its rates came
    from); with fewer still, its runs are not judged.
    """
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
        if t > tolerance * median:
            slowed[key] = {"step_time_s": t, "method_median_s": median}
    return slowed
