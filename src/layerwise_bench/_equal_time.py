"""Equal wall-clock comparison on the deep autoencoder, as AlgoPerf compares optimizers: every method gets
the same training-time budget, with its warm-up/decay schedule fitted to that budget.

The protocol (one seed per run; run it for several seeds and read them together):

1. **Calibrate.** Every method's epoch time is estimated as its mean step time over ``calibration_steps``
   steps (after a few untimed ones) times the steps per epoch. The mean, not the median, so that periodic
   work (Shampoo's roots, K-FAC's inverses) counts. For every budget after the first, the estimate is
   instead the epoch time measured in the method's runs within the smaller budgets (the median over those
   runs of training time over epochs): in the first run the 60-step estimate ran 6.6% short for RMSProp,
   so that most runs within 3·B overran and lost their last, most annealed epoch.
2. **Budget.** ``reference`` (tuned RMSProp) trains ``reference_epochs`` (10) epochs; its measured
   training time is ``B``.
3. **Fit and run.** For each multiple ``k`` of ``B`` and each method, the run gets
   ``E = max(1, floor(k·B / epoch time))`` epochs with its schedule over those ``E`` epochs: a linear decay
   to ``1/E`` of the rate and no warm-up (the rates come from a 10-epoch budget, which has none: 5% of 10
   rounds to 0; and the harness's warm-up starts at lr 0, which would spend a whole epoch of the budget on
   nothing once ``E`` reaches 11).
4. **Tune on the budget.** With ``lr_factors`` (e.g. 0.316, 1, 3.16) every method runs each factor times
   its tuned rate on every budget, and the factor with the lowest loss within the budget is chosen (the
   record says which, and whether it lies on the grid's edge). ``lrs_from`` takes those choices from
   another seed's record instead and runs only them: tune on one seed, evaluate on the others.
5. **Score.** The loss *within* ``k·B`` is the full-training-set loss after the last epoch whose
   cumulative training time is at most ``k·B``; a run whose estimate was short, and that overran, is not
   credited with the epochs after the budget (it is marked). If even its first epoch overran, it has no
   loss within the budget. Methods are ranked by that loss; the report also gives each method's time to
   target losses (the reference's loss at ``B`` and the best loss within ``B``), read from its curves at
   epoch granularity (an upper bound).

Training time counts optimizer steps only (no evaluation), as everywhere in the harness.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ._equal_time_report import run_key, write_equal_time_report
from ._harness import AutoencoderConfig, AutoencoderData, TrainingDiverged, mean_step_time, train_method
from ._record import Record
from ._tuned import prepare_methods

__all__ = ["run_equal_time_benchmark", "within_budget"]


def _score(entry: dict[str, Any]) -> float:
    loss = (entry.get("within") or {}).get("train_loss")
    return float(loss) if loss is not None and math.isfinite(loss) else math.inf


def within_budget(records: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """The last epoch record whose cumulative training time is at most ``budget`` (None if none is)."""
    inside = [r for r in records if r["train_time"] <= budget]
    return inside[-1] if inside else None


def run_equal_time_benchmark(
    method_names: list[str],
    cfg: AutoencoderConfig,
    data: AutoencoderData,
    out: str | Path,
    *,
    multiples: tuple[float, ...] = (1.0, 3.0),
    reference: str = "rmsprop",
    reference_epochs: int = 10,
    calibration_steps: int = 60,
    lr_factors: tuple[float, ...] = (1.0,),
    lrs_from: str | Path | None = None,
    tuned_file: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the protocol of this module and write ``out/report.md``; ``out/results.json`` is saved after every
    run, and with ``resume`` the calibration, the budget and every finished run are kept.

    Raises:
        ValueError: an unknown method, ``reference`` not among the methods, a multiple or factor <= 0, or a
            ``lrs_from`` record of other methods, rates or budgets.
    """
    if reference not in method_names:
        raise ValueError(f"Invalid reference={reference!r}: it must be one of the methods {method_names}.")
    if not multiples or any(not k > 0 for k in multiples):
        raise ValueError(f"Invalid multiples={list(multiples)}: expected numbers > 0, e.g. 1,3.")
    if reference_epochs < 1 or calibration_steps < 1:
        raise ValueError(f"Invalid reference_epochs={reference_epochs} or calibration_steps={calibration_steps}.")
    if not lr_factors or any(not f > 0 for f in lr_factors) or len(set(lr_factors)) < len(lr_factors):
        raise ValueError(f"Invalid lr_factors={list(lr_factors)}: expected distinct numbers > 0, e.g. 0.316,1,3.16.")
    if lrs_from is not None and list(lr_factors) != [1.0]:
        raise ValueError("Pass lr_factors or lrs_from, not both: lrs_from runs the factors another record chose.")
    methods, lrs, tuned_src, tuned = prepare_methods(method_names, cfg.dataset, tuned_file)
    cfg = replace(cfg, warmup_epochs=0)
    given = _read_choices(lrs_from, {m.name: lrs[m.name][0] for m in methods}, multiples) if lrs_from else None
    config = {
        **asdict(cfg),
        "multiples": list(multiples),
        "reference": reference,
        "reference_epochs": reference_epochs,
        "calibration_steps": calibration_steps,
        "lr_factors": list(lr_factors),
        "lrs_from": str(lrs_from) if lrs_from is not None else None,
    }
    record = Record(
        out, "equal-time", config, command=command, device=data.train.device, resume=resume, overwrite=overwrite
    )
    results = record.results
    results["tuned_file"] = str(tuned_src) if tuned else None
    results["train_examples"], results["test_examples"] = len(data.train), len(data.test)
    results["lrs"] = {m.name: {"lr": lrs[m.name][0], "source": lrs[m.name][1], "hparams": m.hparams} for m in methods}
    steps_per_epoch = math.ceil(len(data.train) / cfg.effective_batch_size)
    epoch_time = results.setdefault("epoch_time_estimate", {})
    for m in methods:
        if m.name not in epoch_time:
            epoch_time[m.name] = steps_per_epoch * mean_step_time(m, lrs[m.name][0], data, cfg, steps=calibration_steps)
            record.save()
    by_name = {m.name: m for m in methods}

    def run(key: str, name: str, epochs: int, budget: float | None, factor: float = 1.0) -> dict[str, Any]:
        if record.finished(key):
            return record.runs[key]
        m, lr = by_name[name], lrs[name][0] * factor
        entry: dict[str, Any] = {
            "method": name,
            "epochs": epochs,
            "budget_s": budget,
            "lr": lr,
            "lr_factor": factor,
            "status": "running",
        }
        try:
            recs = train_method(m, lr, data, replace(cfg, epochs=epochs), progress=progress)
        except TrainingDiverged as exc:
            entry.update(status="diverged", error=str(exc), records=[])
        else:
            entry.update(status="complete", records=recs)
        record.save_run(key, entry)
        return entry

    ref = run(f"reference/{reference}", reference, reference_epochs, None)
    if ref["status"] != "complete":
        raise TrainingDiverged(f"the reference {reference!r} diverged: {ref.get('error')}; no budget can be set")
    budget = float(ref["records"][-1]["train_time"])
    results["budget_s"] = budget
    chosen = results.setdefault("chosen", {})
    fitted_times = results.setdefault("epoch_time_fitted", {})
    for i, k in enumerate(multiples):
        fitted = dict(epoch_time)
        if i:  # the epochs of the runs within the smaller budgets, timed as they trained
            smaller = {f"{j:g}" for j in multiples[:i]}
            for m in methods:
                done = [
                    e["records"]
                    for key, e in record.runs.items()
                    if e.get("method") == m.name
                    and e.get("status") == "complete"
                    and e.get("records")
                    and key.split("B/")[0] in smaller
                ]
                if done:  # the median over runs: one run slowed by other load does not move it
                    fitted[m.name] = statistics.median(r[-1]["train_time"] / len(r) for r in done)
        fitted_times[f"{k:g}B"] = fitted
        for m in methods:
            factors = [given[f"{k:g}B/{m.name}"]] if given else list(lr_factors)
            for f in factors:
                key = run_key(k, m.name, f)
                if m.name == reference and k == 1 and f == 1:
                    entry = dict(ref, budget_s=budget, lr=lrs[m.name][0], lr_factor=1.0)
                    record.save_run(key, entry)
                else:
                    epochs = max(1, math.floor(k * budget / fitted[m.name]))
                    entry = run(key, m.name, epochs, k * budget, f)
                if entry["status"] == "complete":
                    entry["within"] = within_budget(entry["records"], k * budget)
                    entry["overran"] = entry["records"][-1]["train_time"] > k * budget
                    record.save_run(key, entry)
            best = min(factors, key=lambda f: _score(record.runs[run_key(k, m.name, f)]))
            chosen[f"{k:g}B/{m.name}"] = {
                "factor": best,
                "lr": lrs[m.name][0] * best,
                "edge": len(factors) > 1 and best in (min(factors), max(factors)),
                "from": str(lrs_from) if given else None,
            }
            record.save()
    record.save()
    write_equal_time_report(results, record.out)
    return results


def _read_choices(path: str | Path, lrs: dict[str, float], multiples: tuple[float, ...]) -> dict[str, float]:
    """The learning-rate factor chosen per budget and method in another equal-time record (``lrs_from``)."""
    from ._io import read_json

    src = Path(path) / "results.json"
    if not src.is_file():
        raise ValueError(f"lrs_from: no equal-time record at {str(src)!r}; pass the directory of the seed tuned on.")
    other = read_json(src)
    chosen, theirs = other.get("chosen") or {}, {n: v["lr"] for n, v in (other.get("lrs") or {}).items()}
    wanted = [f"{k:g}B/{n}" for k in multiples for n in lrs]
    missing = [w for w in wanted if w not in chosen]
    if other.get("benchmark") != "equal-time" or missing or any(theirs.get(n) != lr for n, lr in lrs.items()):
        raise ValueError(
            f"lrs_from: {str(src)!r} does not hold a choice for every budget and method of this run with the same "
            f"tuned rates (missing: {missing[:4]}{'...' if len(missing) > 4 else ''}); run it with the same --methods, "
            "--multiples and --tuned, and --lr-factors, to completion first."
        )
    return {w: float(chosen[w]["factor"]) for w in wanted}
