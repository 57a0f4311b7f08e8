"""A benchmark run: several methods, side by side, same data and epochs, one results file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core._harness import AutoencoderConfig, AutoencoderData, CheckpointMismatch, TrainingDiverged, train_method
from ..core._record import Record
from ..core._tuned import prepare_methods

__all__ = ["run_autoencoder_benchmark"]


def run_autoencoder_benchmark(
    method_names: list[str],
    cfg: AutoencoderConfig,
    data: AutoencoderData,
    out: Path,
    *,
    lr_overrides: dict[str, float] | None = None,
    tuned_file: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    sinks: list[Callable[[str, dict[str, Any]], None]] | None = None,
    keep_going: bool = False,
    hparam_overrides: dict[str, dict[str, Any]] | None = None,
    keep_checkpoints: bool = False,
) -> dict[str, Any]:
    """Train every method on ``data``, rewriting ``out/results.json`` after every epoch (checkpoints in
    ``out/checkpoints``, deleted on completion unless ``keep_checkpoints``; ``sinks`` get ``(method, record)``).
    A divergence is recorded and raised (``keep_going``: the next method runs); ``hparam_overrides`` replace
    hyper-parameters."""
    methods, lrs, tuned_src, tuned = prepare_methods(
        method_names, cfg.dataset, tuned_file, lr_overrides, hparam_overrides, workload=cfg.workload
    )
    out = Path(out)
    record = Record(
        out,
        "autoencoder",
        cfg.as_dict(),
        command=command,
        device=data.train.device,
        resume=resume,
        overwrite=overwrite,
        runs_key="methods",
    )
    results = record.results
    results.update(tuned_file=str(tuned_src) if tuned else None)
    if cfg.workload != "autoencoder":  # the workload's metrics: the report shows those beyond the losses
        results["metrics"] = cfg.task.metrics
    for m in methods:
        lr, source = lrs[m.name]
        entry = results["methods"].setdefault(m.name, {})
        if resume and entry.get("status") == "complete" and len(entry.get("records", [])) == cfg.epochs:
            if (entry.get("lr"), entry.get("hparams")) != (lr, m.hparams):
                raise CheckpointMismatch(
                    f"--resume: method {m.name!r} completed in {str(out)!r} with lr={entry.get('lr')} and "
                    f"hyper-parameters {entry.get('hparams')}, not lr={lr} and {m.hparams}. Resume with the same "
                    "arguments, or start a new run in another --out."
                )
            continue  # finished in an earlier call: kept as recorded, not trained again
        entry.update(summary=m.summary, lr=lr, lr_source=source, hparams=m.hparams, status="running")
        entry.setdefault("records", [])
        entry.pop("error", None)
        checkpoint = out / "checkpoints" / f"{m.name}.pt"
        if not resume:
            entry["records"] = []
            checkpoint.unlink(missing_ok=True)  # a fresh (or --overwrite) run never resumes a stale one

        def on_epoch(epoch: dict[str, Any], entry: dict[str, Any] = entry, name: str = m.name) -> None:
            entry["records"] = entry["records"][: epoch["epoch"] - 1] + [epoch]
            record.save()
            for sink in sinks or []:
                sink(name, epoch)

        try:
            entry["records"] = train_method(
                m,
                lr,
                data,
                cfg,
                checkpoint=checkpoint,
                resume=resume,
                progress=progress,
                on_epoch=on_epoch,
                segment=len(results.get("resumed_with", [])),
            )
        except TrainingDiverged as exc:
            entry.update(status="diverged", error=str(exc))
            record.save()
            if not keep_going:
                raise
            continue
        entry["status"] = "complete"
        record.save()
        if not keep_checkpoints:
            checkpoint.unlink(missing_ok=True)  # the record holds the run; a resume skips completed methods
    record.save()  # a resume that had nothing left to train still records that it ran
    return results
