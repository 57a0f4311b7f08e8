"""``layerwise bench autoencoder`` and ``layerwise bench tune``: the deep-autoencoder benchmark of the LocoProp
paper, methods side by side, and the sweep that tunes them."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import layerwise_bench as bench
from layerwise_bench.workloads import AUTOENCODER_DATASETS, WORKLOADS

from ._common import (
    add_data_args,
    add_flags,
    add_method_overrides,
    config_from_args,
    hparam_overrides,
    names_from,
    numbers,
    pair,
    pick,
    positive_int,
    record_files,
)
from ._subcommand import Outcome, Subcommand

__all__ = ["AUTOENCODER", "EQUAL_TIME", "TUNE"]

_THREADS = "torch CPU threads (default: 1 on digits, whose matrices are too small to gain from more; torch's on mnist)"
BASELINES = "sgd,momentum,adagrad,rmsprop,adam,shampoo,kfac"
LOCOPROP = "locoprop-m,locoprop-s,locoprop-s-exact,locoprop-m-precond"
# `bench autoencoder`'s default (the README's quickstart): also the README headline's LocoProp configuration and Muon
HEADLINE = "locoprop-m-bf16-t5-c4,muon"
QUICKSTART = f"{BASELINES},{LOCOPROP},{HEADLINE}"


_grid_pair = pair(
    lambda text: [float(v) for v in text.split(",") if v],
    lambda name, values: bool(name and values),
    "NAME=V1,V2,... (e.g. damping=10,100)",
)
_centre_pair = pair(
    float,
    lambda name, lr: name in bench.METHODS and lr > 0,
    "METHOD=LR with a registered method and a positive lr (e.g. locoprop-m-bf16=1e-4)",
)
_methods = names_from(bench.METHODS, "method")


def _add_workload_args(p: argparse.ArgumentParser, default_epochs: int, headline: bool = False) -> None:
    p.add_argument(
        "--methods",
        type=_methods,
        default=_methods(QUICKSTART if headline else f"{BASELINES},{LOCOPROP}"),
        help=f"comma-separated method names (default: the baselines {BASELINES} and LocoProp's "
        f"{LOCOPROP}"
        + (f", and the README headline's {HEADLINE}" if headline else "")
        + f"); registered: {', '.join(bench.METHODS)}",
    )
    p.add_argument(
        "--workload",
        choices=list(WORKLOADS),
        default="autoencoder",
        help="what to train: "
        + "; ".join(f"{w.name}: {w.summary}" for w in WORKLOADS.values())
        + " (default autoencoder; the others default to their own methods, reference and budget)",
    )
    p.add_argument(
        "--size",
        default="cpu",
        help="the workload's model preset: cpu (minutes on a 2-core CPU, default) or gpu (larger)",
    )
    p.add_argument(
        "--dataset",
        choices=AUTOENCODER_DATASETS,
        default=None,
        help="the autoencoder's data: digits: offline, ships with scikit-learn (default); mnist: the official "
        "benchmark. The other workloads read their own (resnet-mnist: mnist; lm-bytes: the stdlib sources; "
        "digits-*: digits)",
    )
    p.add_argument("--epochs", type=positive_int, default=default_epochs, help=f"epochs (default {default_epochs})")
    p.add_argument(
        "--schedule-epochs",
        type=positive_int,
        default=None,
        help="length of the warm-up/decay schedule (default: --epochs); e.g. 100 to stop the official schedule early",
    )
    p.add_argument("--subset", type=positive_int, default=None, help="use the first N training examples")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: mnist 1000, digits 100")
    p.add_argument("--activation", choices=("tanh", "relu"), default="tanh")
    add_data_args(p)


def _prepare(
    args: argparse.Namespace, evaluate_test: bool = True
) -> tuple[bench.AutoencoderConfig, bench.AutoencoderData]:
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ValueError(f"Invalid --device {args.device!r}: {exc}. Use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device!r} asked for CUDA, but torch sees no CUDA device. Use --device cpu.")
    _resolve_workload(args)
    if args.threads is None and args.dataset == "digits" and device.type == "cpu":
        # digits' 64-pixel images make matrices too small to gain from threads; on a busy machine two
        # threads per process even lose badly (a 1001x1001 Cholesky went from 0.05 s to 4 s)
        torch.set_num_threads(1)
    cfg = config_from_args(bench.AutoencoderConfig, args, evaluate_test=evaluate_test)
    return cfg, cfg.task.load(cfg, args.data_dir, args.download, device)


def _resolve_workload(args: argparse.Namespace) -> None:
    """Fill the defaults that depend on ``--workload``: its data set, and its methods where ``--methods`` was left
    at the autoencoder's default; refuse a ``--dataset`` it does not read."""
    task = WORKLOADS[args.workload]
    if args.workload == "autoencoder":
        args.dataset = args.dataset or "digits"
        return
    if args.dataset not in (None, task.dataset):
        raise ValueError(
            f"--dataset {args.dataset}: workload {task.name!r} reads {task.dataset!r}. Drop --dataset (it chooses the "
            "autoencoder's data)."
        )
    args.dataset = task.dataset
    if set(args.methods) == set(_methods(f"{BASELINES},{LOCOPROP}")) or set(args.methods) == set(_methods(QUICKSTART)):
        args.methods = list(task.methods)
    task.check_methods(args.methods)


def _add_autoencoder_args(p: argparse.ArgumentParser) -> None:
    _add_workload_args(p, 10, headline=True)
    add_method_overrides(p)
    add_flags(
        p,
        {},
        {
            "tuned": (Path, "tuned-values file (default: the one shipped for --dataset)"),
            "keep_checkpoints": (
                bool,
                "keep every method's last checkpoint after it completes (default: deleted; the record holds the run)",
            ),
            "keep_going": (
                bool,
                "when a method diverges, record it and go on with the next (exit status 1 at the end)",
            ),
            "tensorboard": (
                Path,
                "also log every epoch to TensorBoard (needs layerwise[tensorboard])",
                {"metavar": "LOG_DIR"},
            ),
        },
    )


def _check_tuned(args: argparse.Namespace) -> None:
    if args.tuned is not None and not args.tuned.is_file():
        raise FileNotFoundError(
            f"--tuned {str(args.tuned)!r}: no such file. Give an existing tuned-values file (written by "
            "`layerwise bench tune --out-file`), or drop --tuned to use the one shipped for the data set."
        )


def _run_autoencoder(args: argparse.Namespace, command: str) -> Outcome:
    _check_tuned(args)
    sink = bench.TensorBoardSink(args.tensorboard) if args.tensorboard else None
    cfg, data = _prepare(args)
    try:
        results = bench.run_autoencoder_benchmark(
            args.methods,
            cfg,
            data,
            args.out,
            lr_overrides=args.lr,
            tuned_file=args.tuned,
            command=command,
            sinks=[sink] if sink else None,
            hparam_overrides=hparam_overrides(args),
            **pick(args, "resume", "overwrite", "progress", "keep_going", "keep_checkpoints"),
        )
    finally:
        if sink:
            sink.close()
    bench.write_report([results], args.out)
    diverged = [m["error"] for m in results["methods"].values() if m["status"] == "diverged"]
    lines = [f"{'method':>20}  {'final train loss':>16}  {'train time (s)':>14}  status"]
    for name, m in results["methods"].items():
        last = m["records"][-1] if m["records"] else {}
        loss, seconds = last.get("train_loss", float("nan")), last.get("train_time", float("nan"))
        lines.append(f"{name:>20}  {loss:>16.2f}  {seconds:>14.1f}  {m['status']}")
    return Outcome(lines=lines, wrote=record_files(args.out), errors=diverged, status=1 if diverged else 0)


def _centres(names: list[str], dataset: str) -> dict[str, float]:
    methods = [bench.get_method(n) for n in names]
    return {n: lr for n, (lr, _) in bench.resolve_lrs(methods, {}, bench.load_tuned(bench.tuned_path(dataset))).items()}


def _add_tune_args(p: argparse.ArgumentParser) -> None:
    _add_workload_args(p, 4)
    add_flags(
        p,
        {"points": 5, "grid": [], "centre": "default", "centre_lr": [], "close": 0.01, "seeds": 3},
        {
            "points": (positive_int, "grid points per method (half-decade steps)"),
            "grid": (
                _grid_pair,
                "also sweep this hyper-parameter (repeatable), e.g. --grid damping=10,100,1000",
                {"action": "append", "metavar": "NAME=V1,V2,..."},
            ),
            "centre": (
                ("default", "tuned"),
                "centre of each lr grid: the method's default, or its lr in the shipped tuned-values file",
            ),
            "centre_lr": (
                _centre_pair,
                "centre this method's lr grid here instead (repeatable), e.g. a variant not yet in the shipped file",
                {"action": "append", "metavar": "METHOD=LR"},
            ),
            "close": (
                float,
                "configurations within this fraction of the best are re-run with more seeds (default {close})",
            ),
            "seeds": (positive_int, "seeds in all for a close call (default {seeds}; 1: none)"),
            "out_file": (
                Path,
                "where to write the tuned values (pass it to `bench autoencoder --tuned`); an existing file keeps "
                "its other methods' entries",
                {"required": True},
            ),
        },
    )


def _run_tune(args: argparse.Namespace, command: str) -> Outcome:
    cfg, data = _prepare(args, evaluate_test=False)
    centres = {**(_centres(args.methods, cfg.dataset) if args.centre == "tuned" else {}), **dict(args.centre_lr)}
    result = bench.tune_learning_rates(
        args.methods,
        cfg,
        data,
        args.out_file,
        grid=dict(args.grid),
        centres=centres or None,
        command=command,
        **pick(args, "points", "progress", "close", "seeds", "resume"),
    )
    lines = [f"{name:>10}: lr={e['lr']:.3g}  sweep={e['sweep']}" for name, e in result["methods"].items()]
    return Outcome(lines=lines, wrote=[str(args.out_file)])


AUTOENCODER = Subcommand(
    "autoencoder",
    "deep autoencoder (LocoProp paper setup), methods side by side",
    _add_autoencoder_args,
    _run_autoencoder,
    threads_help=_THREADS,
)
TUNE = Subcommand(
    "tune",
    "lr sweep on the budget given (tune on the budget you report); writes a tuned-values file",
    _add_tune_args,
    _run_tune,
    threads_help=_THREADS,
    unsupported={
        "out": "a sweep writes one tuned-values file: use --out-file",
        "overwrite": "a sweep merges its methods into --out-file, keeping the others",
    },
    out_required=False,
)


_floats = numbers(float, lambda vs: all(v > 0 for v in vs), "comma-separated numbers > 0 (e.g. 1,3)")


def _add_equal_time_args(p: argparse.ArgumentParser) -> None:
    _add_workload_args(p, 10)
    p.set_defaults(epochs=None)  # the workload's reference_epochs (the autoencoder's: 10)
    add_flags(
        p,
        {"multiples": (1.0, 3.0), "lr_factors": (1.0,)},
        {
            "multiples": (_floats, "budgets as multiples of B (default 1,3)"),
            "reference": (
                None,
                "the method whose training time for --epochs epochs is the budget B (default: the workload's; "
                "autoencoder: rmsprop for 10 epochs, resnet-mnist: adamw for 5, lm-bytes: adamw for 4, digits-*: "
                "adamw for 20)",
            ),
            "tuned": (Path, "tuned-values file (default: the one shipped for the data)"),
            "lr_factors": (
                _floats,
                "tune on each budget: run every method at these multiples of its tuned rate and score the best "
                "(default 1: the tuned rate only; e.g. 0.316,1,3.16)",
            ),
            "lrs_from": (
                Path,
                "take each budget's chosen rate from this seed's equal-time record (run with --lr-factors) and run "
                "only those: tune on one seed, evaluate on others",
            ),
        },
    )


def _run_equal_time(args: argparse.Namespace, command: str) -> Outcome:
    if args.schedule_epochs is not None:
        raise ValueError("--schedule-epochs: equal-time decays each run's rate over its time budget. Drop it.")
    _resolve_workload(args)
    task = WORKLOADS[args.workload]
    args.reference = args.reference or task.reference
    args.epochs = args.epochs or task.reference_epochs
    if args.reference not in args.methods:
        raise ValueError(f"--reference {args.reference!r} is not among --methods; add it to --methods.")
    _check_tuned(args)
    cfg, data = _prepare(args, evaluate_test=task.evaluate_in_equal_time)
    results = bench.run_equal_time_benchmark(
        args.methods,
        cfg,
        data,
        args.out,
        reference_epochs=args.epochs,
        tuned_file=args.tuned,
        command=command,
        **pick(args, "multiples", "reference", "lr_factors", "lrs_from", "resume", "overwrite", "progress"),
    )
    lines = []
    for k in args.multiples:
        scored = sorted(
            (r for name in results["lrs"] if (r := bench.chosen_run(results, k, name)) is not None),
            key=lambda v: (v.get("within") or {}).get(task.score, float("inf")),
        )
        lines.append(
            f"within {k:g}B ({task.score}): "
            + ", ".join(f"{v['method']} {(v.get('within') or {}).get(task.score, float('nan')):.3g}" for v in scored)
        )
    return Outcome(lines=lines, wrote=record_files(args.out))


EQUAL_TIME = Subcommand(
    "equal-time",
    "methods at equal training time: B from --reference; each run decays its rate with time, stops at k*B",
    _add_equal_time_args,
    _run_equal_time,
    threads_help=_THREADS,
)
