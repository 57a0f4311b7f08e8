"""Equal wall-clock comparison, as AlgoPerf compares optimizers: every method gets the same training-time budget.

Protocol (one seed per record; read several seeds together with ``layerwise report``):

1. Budget: ``reference`` trains ``reference_epochs`` epochs; its training time is ``B``.
2. On the clock: each method runs within each ``k·B`` with rate ``lr · (1 - t / (k·B))`` (``train_method``'s
   ``budget_s``; Schedule-Free keeps its rate), stopping when its next step would no longer fit.
3. Tune on the budget: with ``lr_factors`` each factor × the tuned rate runs, the best is chosen; a best on an edge
   extends the grid (at most ``EDGE_STEPS`` times). ``lrs_from`` takes the choices from another seed's record.
4. Score: the loss where the run stopped (``within``; ``over_s`` past ``k·B``); methods are ranked by it.
5. Slowed runs (``_slow_runs``): a run more than ``SLOW_TOLERANCE`` slower than its method's median is run once
   more and its budget's choice made again; the reference is not repeated."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core._harness import AutoencoderConfig, TrainingDiverged, train_method
from ..core._record import Record
from ..core._slow_runs import SLOW_TOLERANCE, method_step_times, slowed_runs
from ..core._tuned import prepare_methods
from ._equal_time_report import run_key, write_equal_time_report

__all__ = ["EDGE_STEPS", "run_equal_time_benchmark"]

EDGE_STEPS = 2
"""How many times a learning-rate grid is extended past an edge that holds the best loss."""


def _score(entry: dict[str, Any], metric: str = "train_loss") -> float:
    loss = (entry.get("within") or {}).get(metric)
    return float(loss) if loss is not None and math.isfinite(loss) else math.inf


def run_equal_time_benchmark(
    method_names: list[str],
    cfg: AutoencoderConfig,
    data: Any,
    out: str | Path,
    *,
    multiples: tuple[float, ...] = (1.0, 3.0),
    reference: str = "rmsprop",
    reference_epochs: int = 10,
    lr_factors: tuple[float, ...] = (1.0,),
    lrs_from: str | Path | None = None,
    tuned_file: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the protocol of this module and write ``out/report.md``, saving ``out/results.json`` after every run (a
    resume keeps the budget and finished runs). ValueError for an invalid method, reference, multiple, factor or
    ``lrs_from`` record."""
    if reference not in method_names:
        raise ValueError(f"Invalid reference={reference!r}: it must be one of the methods {method_names}.")
    if not multiples or any(not k > 0 for k in multiples):
        raise ValueError(f"Invalid multiples={list(multiples)}: expected numbers > 0, e.g. 1,3.")
    if reference_epochs < 1:
        raise ValueError(f"Invalid reference_epochs={reference_epochs}: expected an integer >= 1.")
    if not lr_factors or any(not f > 0 for f in lr_factors) or len(set(lr_factors)) < len(lr_factors):
        raise ValueError(f"Invalid lr_factors={list(lr_factors)}: expected distinct numbers > 0, e.g. 0.316,1,3.16.")
    if lrs_from is not None and list(lr_factors) != [1.0]:
        raise ValueError("Pass lr_factors or lrs_from, not both: lrs_from runs the factors another record chose.")
    methods, lrs, tuned_src, tuned = prepare_methods(method_names, cfg.dataset, tuned_file, workload=cfg.workload)
    cfg = replace(cfg, warmup_epochs=0)
    metric = cfg.task.score
    same = {"dataset": cfg.dataset, "subset": cfg.subset, "reference": reference, "reference_epochs": reference_epochs}
    if cfg.workload != "autoencoder":
        same.update(workload=cfg.workload, size=cfg.size)
    given = _read_choices(lrs_from, {m.name: lrs[m.name][0] for m in methods}, multiples, same) if lrs_from else None
    config = {
        **cfg.as_dict(),
        "multiples": list(multiples),
        "reference": reference,
        "reference_epochs": reference_epochs,
        "schedule": "time",  # linear decay with the training time used, stopped at the budget
        "lr_factors": list(lr_factors),
        "lrs_from": str(lrs_from) if lrs_from is not None else None,
    }
    record = Record(
        out, "equal-time", config, command=command, device=data.train.device, resume=resume, overwrite=overwrite
    )
    results = record.results
    results["tuned_file"] = str(tuned_src) if tuned else None
    results["train_examples"], results["test_examples"] = len(data.train), len(data.test)
    if cfg.workload != "autoencoder":  # the autoencoder's records predate workloads: they rank by train_loss
        results["score"], results["metrics"] = metric, cfg.task.metrics
        results["data"] = getattr(data, "info", {})
    results["lrs"] = {
        m.name: {
            "lr": lrs[m.name][0],
            "source": lrs[m.name][1],
            "hparams": m.hparams,
            **({"path": m.path} if m.path else {}),
        }
        for m in methods
    }
    by_name = {m.name: m for m in methods}

    def run(
        key: str, name: str, budget: float | None, factor: float = 1.0, first: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if record.finished(key) and first is None:
            return record.runs[key]
        m, lr = by_name[name], lrs[name][0] * factor
        entry: dict[str, Any] = {"method": name, "budget_s": budget, "lr": lr, "lr_factor": factor, "status": "running"}
        if first is not None:  # a run again of a slowed run: the first one is kept beside it
            entry["first_run"] = first
        try:
            if budget is None:
                recs = train_method(m, lr, data, replace(cfg, epochs=reference_epochs), progress=progress)
            else:
                recs = train_method(m, lr, data, cfg, progress=progress, budget_s=budget)
        except TrainingDiverged as exc:
            entry.update(status="diverged", error=str(exc), records=[])
        else:
            entry.update(status="complete", records=recs, epochs=recs[-1]["epoch"])
            if budget is not None:
                entry.update(within=recs[-1], over_s=max(0.0, recs[-1]["train_time"] - budget))
        record.save_run(key, entry)
        return entry

    ref = run(f"reference/{reference}", reference, None)
    if ref["status"] != "complete":
        raise TrainingDiverged(f"the reference {reference!r} diverged: {ref.get('error')}; no budget can be set")
    budget = float(ref["records"][-1]["train_time"])
    results["budget_s"] = budget
    chosen = results.setdefault("chosen", {})

    def choose(k: float, name: str, grid: list[float]) -> None:
        """Score ``name``'s runs within k·B, extending ``grid`` past an edge that holds the best (see step 3).
        The factors are taken in the order they ran (the grid, then its extensions), so a tie (e.g. every run
        diverged) goes to the first, as it did before the choice could be made again."""
        prefix = f"{k:g}B/"
        ran = [e["lr_factor"] for key, e in record.runs.items() if key.startswith(prefix) and e["method"] == name]
        factors = [*grid, *(f for f in ran if f not in grid)]

        def best_of(fs: list[float]) -> float:
            return min(fs, key=lambda f: _score(record.runs[run_key(k, name, f)], metric))

        while len(grid) > 1 and len(factors) - len(grid) < EDGE_STEPS:
            further = _beyond_edge(sorted(factors), best_of(factors))
            if further is None:
                break
            run(run_key(k, name, further), name, k * budget, further)
            factors.append(further)
        best = best_of(factors)
        chosen[f"{k:g}B/{name}"] = {
            "factor": best,
            "lr": lrs[name][0] * best,
            "edge": len(factors) > 1 and best in (min(factors), max(factors)),
            "factors": sorted(factors),
            "from": str(lrs_from) if given else None,
        }
        record.save()

    grids: dict[tuple[float, str], list[float]] = {}
    for k in multiples:
        for m in methods:
            grids[k, m.name] = [given[f"{k:g}B/{m.name}"]] if given else list(lr_factors)
            for f in grids[k, m.name]:
                run(run_key(k, m.name, f), m.name, k * budget, f)
            choose(k, m.name, grids[k, m.name])
    # step 5: a slowed run is run once more and its budget's choice made again, until none is left to repeat
    # (a repeat moves its method's median, and a choice made again can extend the grid)
    pooled = _pool(lrs_from, results["environment"]) if lrs_from else None
    results["slow_tolerance"], results["slow_pooled"] = SLOW_TOLERANCE, pooled is not None
    while todo := [
        (key, slow)
        for key, slow in slowed_runs(record.runs, pooled=pooled).items()
        if not key.startswith("reference/") and "first_run" not in record.runs[key]
    ]:  # ends: every run is repeated at most once, and the grids' extensions are capped
        for key, slow in todo:
            entry = record.runs[key]
            run(key, entry["method"], entry["budget_s"], entry["lr_factor"], first={**entry, **slow})
            k = next(k for k in multiples if key.startswith(f"{k:g}B/"))
            choose(k, entry["method"], grids[k, entry["method"]])
    results["slowed"] = slowed_runs(record.runs, pooled=pooled)  # the reference, and runs slowed twice
    return record.finish(write_equal_time_report)


def _beyond_edge(factors: list[float], best: float) -> float | None:
    """The next factor past the edge of the sorted grid ``factors`` that holds ``best`` (the edge's ratio to its
    neighbour once more, to 3 significant digits), or None when ``best`` lies inside."""
    if best == factors[0]:
        return float(f"{factors[0] ** 2 / factors[1]:.3g}")
    if best == factors[-1]:
        return float(f"{factors[-1] ** 2 / factors[-2]:.3g}")
    return None


def _pool(path: str | Path, environment: dict[str, Any]) -> dict[str, list[float]] | None:
    """The step times of the record at ``path`` by method, to judge slowed runs with; None when it was measured
    on another machine or thread count (``same_machine``: its step times would say nothing about this run's)."""
    from ..core._io import read_json
    from ..core._machine import same_machine

    other = read_json(Path(path) / "results.json")
    theirs = other.get("environment") or {}
    if not same_machine(theirs, environment) or other.get("resumed_on"):
        return None
    return method_step_times(other.get("runs") or {})


def _read_choices(
    path: str | Path, lrs: dict[str, float], multiples: tuple[float, ...], same: dict[str, Any]
) -> dict[str, float]:
    """The learning-rate factor chosen per budget and method in another equal-time record (``lrs_from``)."""
    from ..core._io import read_json

    src = Path(path) / "results.json"
    if not src.is_file():
        raise ValueError(f"lrs_from: no equal-time record at {str(src)!r}; pass the directory of the seed tuned on.")
    other = read_json(src)
    chosen, theirs = other.get("chosen") or {}, {n: v["lr"] for n, v in (other.get("lrs") or {}).items()}
    wanted = [f"{k:g}B/{n}" for k in multiples for n in lrs]
    missing = [w for w in wanted if w not in chosen]
    cfg = other.get("config") or {}
    if cfg.get("schedule") != "time":
        raise ValueError(
            f"lrs_from: {str(src)!r} was made with the epoch-count fit, not on the clock: its rates were chosen under "
            "another schedule. Tune a seed with this version (--lr-factors) and pass its directory."
        )
    differ = {k: (cfg.get(k), v) for k, v in same.items() if cfg.get(k) != v}
    if differ:
        raise ValueError(
            f"lrs_from: {str(src)!r} was tuned on other settings (theirs, ours: {differ}); pass a seed of this "
            "benchmark's --dataset, --subset, --reference and --epochs."
        )
    if other.get("benchmark") != "equal-time" or missing or any(theirs.get(n) != lr for n, lr in lrs.items()):
        raise ValueError(
            f"lrs_from: {str(src)!r} does not hold a choice for every budget and method of this run with the same "
            f"tuned rates (missing: {missing[:4]}{'...' if len(missing) > 4 else ''}); run it with the same --methods, "
            "--multiples and --tuned, and --lr-factors, to completion first."
        )
    return {w: float(chosen[w]["factor"]) for w in wanted}
