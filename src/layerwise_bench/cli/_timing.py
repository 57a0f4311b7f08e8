"""``layerwise bench steptime`` and ``layerwise bench telemetry``: timing runs on fixed random data."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import layerwise_bench as bench

from ..workloads import WORKLOADS
from ._common import add_flags, add_method_overrides, hparam_overrides, names_from, pick, positive_int
from ._subcommand import Outcome, Subcommand

__all__ = ["DIAGNOSE", "STEPTIME", "TELEMETRY"]

_TIMING = {
    "seed": "a timing run feeds fixed random data; its numbers do not depend on a seed",
    "resume": "a timing run is not resumable: rerun it",
    "progress": "it shows no progress bars",
}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(positive_int(v) for v in text.split(","))


def _add_steptime_args(p: argparse.ArgumentParser) -> None:
    add_flags(
        p,
        {"batch_size": 1000, "steps": (1, 5, 10), "repeats": 10, "size": "cpu", "chunks": ()},
        {
            "batch_size": (positive_int, None),
            "steps": (_ints, "inner steps T to compare (default 1,5,10)"),
            "repeats": (positive_int, "timed steps per entry (default {repeats})"),
            "no_pypi": (bool, "skip the PyPI locoprop port"),
            "workload": (
                tuple(WORKLOADS),
                "time registry methods (--methods) on this workload's model and one batch of its data, instead of "
                "LocoProp's autoencoder entries",
            ),
            "methods": (
                names_from(bench.METHODS, "method"),
                "with --workload: the methods to time, the first the reference (default: the workload's)",
            ),
            "size": (None, "with --workload: its model preset (cpu, gpu, tiny)"),
            "workload_batch_size": (
                positive_int,
                "with --workload: the batch (default: the workload's)",
                {"dest": "batch_size_workload"},
            ),
            "data_dir": (None, "with --workload: the data directory (MNIST in DIR/mnist)"),
            "chunks": (
                _ints,
                "also time bf16 LocoProp with its inner steps on 1/c of the batch, for each c (e.g. 2,4)",
            ),
        },
    )


def _run_steptime(args: argparse.Namespace, command: str) -> Outcome:
    if args.workload is not None:
        return _run_method_steptime(args, command)
    if args.methods is not None:
        raise ValueError("--methods times registry methods on a workload: add --workload (e.g. resnet-mnist).")
    res = bench.run_steptime_benchmark(
        args.out,
        pypi=not args.no_pypi,
        command=command,
        **pick(args, "batch_size", "steps", "repeats", "device", "chunks", "overwrite"),
    )
    lines = [f"{n:>34}: {v:.4f} s  ({res['vs_adam'][n]:.2f}x Adam)" for n, v in res["median_step_s"].items()]
    return Outcome(lines=lines, wrote=[str(args.out / "report.md")])


def _load(args: argparse.Namespace, names: list[str], **cfg: Any) -> tuple[bench.RunConfig, Any]:
    """``--workload``'s data for one epoch of ``names`` (checked before any data is read), on ``--device``."""
    import torch

    task = WORKLOADS[args.workload]
    task.check_methods(names)
    run_cfg = bench.RunConfig(dataset=task.dataset, epochs=1, workload=args.workload, size=args.size, **cfg)
    return run_cfg, task.load(run_cfg, args.data_dir, False, torch.device(args.device))


def _run_method_steptime(args: argparse.Namespace, command: str) -> Outcome:
    names = args.methods or list(WORKLOADS[args.workload].methods) or ["adam", "muon", "locoprop-m-bf16-t5-c4"]
    cfg, data = _load(args, names, batch_size=args.batch_size_workload)
    res = bench.run_method_steptime(
        names, cfg, data, args.out, repeats=args.repeats, command=command, overwrite=args.overwrite
    )
    lines = [
        f"{n:>24}: mean {v * 1e3:8.1f} ms ({res['vs_first_mean'][n]:.2f}x {names[0]}), median "
        f"{res['median_step_s'][n] * 1e3:8.1f} ms ({res['vs_first'][n]:.2f}x)"
        for n, v in res["mean_step_s"].items()
    ]
    return Outcome(lines=lines, wrote=[str(args.out / "report.md")])


def _add_telemetry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--k", type=_ints, default=(2, 4, 8), help="numbers of loss terms K to compare, each <= 8 (default 2,4,8)"
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        help="steps per timed block of the plain and every=N paths, a multiple of --every (default 100)",
    )
    p.add_argument("--every", type=positive_int, default=50, help="telemetry period of the sampled path (default 50)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed rounds after a warm-up round (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=256)


def _run_telemetry(args: argparse.Namespace, command: str) -> Outcome:
    res = bench.run_telemetry_benchmark(
        args.out, command=command, **pick(args, "k", "steps", "every", "repeats", "batch_size", "device", "overwrite")
    )
    lines = [
        f"K={r['k']}: plain {1e3 * r['plain_s']:.1f} ms, K x autograd.grad {1e3 * r['kgrad_s']:.1f} ms "
        f"(+ stats {1e3 * r['kgrad_stats_s']:.1f} ms), every=1 {1e3 * r['every1_s']:.1f} ms "
        f"({r['every1_vs_kgrad']:.2f}x; {r['every1_vs_kgrad_stats']:.2f}x), every={args.every} "
        f"{1e3 * r['everyN_s']:.1f} ms ({100 * r['everyN_overhead']:+.1f}% vs plain)"
        for r in res["rows"]
    ]
    return Outcome(lines=lines, wrote=[str(args.out / "report.md")])


STEPTIME = Subcommand(
    "steptime",
    "LocoProp step time against Adam and the PyPI locoprop port (equal T)",
    _add_steptime_args,
    _run_steptime,
    unsupported=_TIMING,
)
TELEMETRY = Subcommand(
    "telemetry",
    "cost of per-loss-term gradient telemetry against plain and K-autograd.grad steps",
    _add_telemetry_args,
    _run_telemetry,
    unsupported=_TIMING,
)


_LOCOPROP_RECIPE = {"resnet-mnist": "locoprop-cnn", "lm-bytes": "locoprop-transformer"}


def _add_diagnose_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", choices=sorted(_LOCOPROP_RECIPE), required=True)
    p.add_argument(
        "--method",
        choices=sorted(n for n in bench.METHODS if n.startswith("locoprop")),
        default=None,
        help="the LocoProp method to diagnose (default: the workload's recipe)",
    )
    p.add_argument("--reference", default="adamw", help="the first-order method beside it (default adamw)")
    p.add_argument("--steps", type=positive_int, default=200, help="training steps with per-layer stats (default 200)")
    p.add_argument("--window", type=positive_int, default=20, help="steps timed, then profiled (default 20)")
    p.add_argument("--size", default="cpu", help="the workload's model preset (cpu, gpu, tiny)")
    p.add_argument("--data-dir", default=None, help="the data directory (MNIST in DIR/mnist)")
    add_method_overrides(p)


def _run_diagnose(args: argparse.Namespace, command: str) -> Outcome:
    method = args.method or _LOCOPROP_RECIPE[args.workload]
    cfg, data = _load(args, [method, args.reference], seed=args.seed)
    res = bench.run_locoprop_diagnosis(
        method,
        cfg,
        data,
        args.out,
        lr_overrides=args.lr,
        hparam_overrides=hparam_overrides(args),
        command=command,
        **pick(args, "reference", "steps", "window", "overwrite"),
    )
    mean = res["mean_step_ms"]
    lines = [
        f"{n:>24}: mean step {mean[n]:7.1f} ms, batch loss (last half) "
        f"{statistics.fmean(res['losses'][n][args.steps // 2 :]):.4f}"
        for n in (method, args.reference)
    ]
    return Outcome(lines=lines, wrote=[str(args.out / "report.md")])


DIAGNOSE = Subcommand(
    "diagnose",
    "LocoProp layer by layer against a first-order step: update cosine, size, local residual, phase and layer times",
    _add_diagnose_args,
    _run_diagnose,
    unsupported={k: v for k, v in _TIMING.items() if k != "seed"},
)
