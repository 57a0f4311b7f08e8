"""Equal wall-clock comparison on the deep autoencoder, as AlgoPerf compares optimizers: every method gets
the same training-time budget, with its warm-up/decay schedule fitted to that budget.

The protocol (one seed per run; run it for several seeds and read them together):

1. **Calibrate.** Every method's epoch time is estimated as its mean step time over ``calibration_steps``
   steps (after a few untimed ones) times the steps per epoch. The mean, not the median, so that periodic
   work (Shampoo's roots, K-FAC's inverses) counts.
2. **Budget.** ``reference`` (tuned RMSProp) trains ``reference_epochs`` (10) epochs; its measured
   training time is ``B``.
3. **Fit and run.** For each multiple ``k`` of ``B`` and each method, the run gets
   ``E = max(1, floor(k·B / epoch time))`` epochs with its schedule over those ``E`` epochs (warm-up and
   decay as the harness does for any run length), and trains them.
4. **Score.** The loss *within* ``k·B`` is the full-training-set loss after the last epoch whose
   cumulative training time is at most ``k·B``; a run whose estimate was short, and that overran, is not
   credited with the epochs after the budget (it is marked). If even its first epoch overran, it has no
   loss within the budget. Methods are ranked by that loss; the report also gives each method's time to
   target losses (the reference's loss at ``B`` and the best loss within ``B``), read from its curves at
   epoch granularity (an upper bound).

Training time counts optimizer steps only (no evaluation), as everywhere in the harness.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ._equal_time_report import write_equal_time_report
from ._harness import AutoencoderConfig, AutoencoderData, TrainingDiverged, mean_step_time, train_method
from ._record import Record
from ._tuned import prepare_methods

__all__ = ["run_equal_time_benchmark", "within_budget"]


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
    tuned_file: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the protocol of this module and write ``out/report.md``; ``out/results.json`` is saved after every
    run, and with ``resume`` the calibration, the budget and every finished run are kept.

    Raises:
        ValueError: an unknown method, ``reference`` not among the methods, a multiple <= 0.
    """
    if reference not in method_names:
        raise ValueError(f"Invalid reference={reference!r}: it must be one of the methods {method_names}.")
    if not multiples or any(not k > 0 for k in multiples):
        raise ValueError(f"Invalid multiples={list(multiples)}: expected numbers > 0, e.g. 1,3.")
    if reference_epochs < 1 or calibration_steps < 1:
        raise ValueError(f"Invalid reference_epochs={reference_epochs} or calibration_steps={calibration_steps}.")
    methods, lrs, tuned_src, tuned = prepare_methods(method_names, cfg.dataset, tuned_file)
    config = {
        **asdict(cfg),
        "multiples": list(multiples),
        "reference": reference,
        "reference_epochs": reference_epochs,
        "calibration_steps": calibration_steps,
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

    def run(key: str, name: str, epochs: int, budget: float | None) -> dict[str, Any]:
        if record.finished(key):
            return record.runs[key]
        m = by_name[name]
        entry: dict[str, Any] = {"method": name, "epochs": epochs, "budget_s": budget, "status": "running"}
        try:
            recs = train_method(m, lrs[name][0], data, replace(cfg, epochs=epochs), progress=progress)
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
    for k in multiples:
        for m in methods:
            key = f"{k:g}B/{m.name}"
            if m.name == reference and k == 1:
                entry = dict(ref, budget_s=budget)
                record.save_run(key, entry)
            else:
                epochs = max(1, math.floor(k * budget / epoch_time[m.name]))
                entry = run(key, m.name, epochs, k * budget)
            if entry["status"] == "complete":
                inside = within_budget(entry["records"], k * budget)
                entry["within"] = inside
                entry["overran"] = entry["records"][-1]["train_time"] > k * budget
                record.save_run(key, entry)
    record.save()
    write_equal_time_report(results, record.out)
    return results
