"""``layerwise report``: rebuild a record's report (and plots) from its ``results.json``, for every benchmark
that can; several autoencoder records make one report with mean and spread, several equal-time records (one
per seed) one report of each method's loss within the budget across seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .autoencoder._equal_time_report import write_equal_time_report, write_equal_time_summary
from .autoencoder._report import load_runs, write_report
from .deep_mlp._aux_report import write_aux_report
from .deep_mlp._depth_report import write_depth_report
from .deep_mlp._similarity import write_similarity_report
from .exits._report import write_exits_report
from .systems._parallel import write_parallel_report
from .timing._diagnose import write_diagnosis_report
from .timing._steptime import write_method_steptime_report, write_steptime_report
from .timing._telemetry import write_telemetry_report

__all__ = ["rebuild_report"]

# a record's "benchmark" -> the function that writes its report from its results
_SINGLE: dict[str, Callable[[dict[str, Any], Path], Path]] = {
    "aux": write_aux_report,
    "depth": write_depth_report,
    "equal-time": write_equal_time_report,
    "exits": write_exits_report,
    "similarity": write_similarity_report,
    "locoprop-steptime": write_steptime_report,
    "method-steptime": write_method_steptime_report,
    "locoprop-diagnosis": write_diagnosis_report,
    "telemetry-overhead": write_telemetry_report,
    "layer-parallel": write_parallel_report,
}


def rebuild_report(
    dirs: list[str | Path], out: str | Path | None = None, *, allow_mixed_machines: bool = False
) -> Path:
    """Rewrite ``report.md`` (and plots) in ``out`` (default: the first directory) from the records in ``dirs``;
    the report names the machines. ValueError for a record it cannot rebuild, a mix of kinds, or equal-time records
    without ``out`` or from several machines (unless ``allow_mixed_machines``, which marks their tables)."""
    runs = load_runs(dirs)
    target = Path(out if out is not None else dirs[0])
    kinds = [r.get("benchmark", "?") for r in runs]
    if all(k == "autoencoder" for k in kinds):
        return write_report(runs, target)
    if len(runs) > 1 and all(k == "equal-time" for k in kinds):
        if out is None:
            raise ValueError(
                f"Several equal-time records are read together into a new report: pass --out DIR (the default, "
                f"{str(dirs[0])!r}, holds that seed's own report), e.g. the directory above the seeds."
            )
        if any(target.resolve() == Path(d).resolve() for d in dirs):
            raise ValueError(
                f"--out {str(target)!r} is one of the seeds' directories, whose own report it would replace; pass "
                "another, e.g. the directory above the seeds."
            )
        return write_equal_time_summary(runs, target, sources=list(dirs), allow_mixed_machines=allow_mixed_machines)
    first = Path(dirs[0]) / "results.json"
    if len(runs) > 1:
        raise ValueError(
            f"layerwise report combines several records only when all are autoencoder or all equal-time records; "
            f"these are {kinds}. "
            "Pass one directory at a time."
        )
    if kinds[0] == "?":
        raise ValueError(
            f"{str(first)!r} has no 'benchmark' entry (it was written before records named their benchmark), so "
            "its report cannot be rebuilt; rerun the benchmark that made it (its 'command' entry) with --overwrite."
        )
    if kinds[0] not in _SINGLE:
        raise ValueError(
            f"{str(first)!r} is a {kinds[0]!r} record, whose report cannot be rebuilt from its results; rerun "
            f"'layerwise bench {kinds[0]}' with --overwrite to rewrite it. Rebuildable: autoencoder, "
            f"{', '.join(sorted(_SINGLE))}."
        )
    return _SINGLE[kinds[0]](runs[0], target)
