"""``layerwise bench autoencoder|tune`` and ``layerwise report``: thin shells over the public API."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

import layerwise_bench as bench
from layerwise.data import DATASETS, DataError

from ._aux import add_aux_parser, run_aux
from ._common import add_common_flags, check_common_flags
from ._depth import add_depth_parser, run_depth
from ._parallel import add_parallel_parser, add_zstore_parser, run_parallel, run_zstore
from ._similarity import add_similarity_parser, run_similarity

__all__ = ["build_parser", "main"]

BASELINES = "sgd,momentum,adagrad,rmsprop,adam,shampoo,kfac"
_TIMING = {
    "seed": "a timing run feeds fixed random data; its numbers do not depend on a seed",
    "resume": "a timing run is not resumable: rerun it",
    "progress": "it shows no progress bars",
}
LOCOPROP = "locoprop-m,locoprop-s,locoprop-s-exact,locoprop-m-precond"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {value}")
    return value


def _lr_pairs(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        try:
            lr = float(value)
        except ValueError:
            lr = -1.0
        if not sep or lr <= 0:
            raise argparse.ArgumentTypeError(
                f"expected METHOD=LR pairs with LR > 0 (e.g. adam=1e-3,sgd=0.01), found {item!r}"
            )
        out[name] = lr
    return out


def _grid_pair(text: str) -> tuple[str, list[float]]:
    name, sep, values = text.partition("=")
    try:
        parsed = [float(v) for v in values.split(",") if v]
    except ValueError:
        parsed = []
    if not sep or not name or not parsed:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... (e.g. damping=10,100), found {text!r}")
    return name, parsed


def _methods(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of method names")
    for n in names:
        if n not in bench.METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {n!r}; expected some of: {', '.join(bench.METHODS)}")
    return names


def _add_run_args(p: argparse.ArgumentParser, default_epochs: int) -> None:
    p.add_argument(
        "--methods",
        type=_methods,
        default=_methods(f"{BASELINES},{LOCOPROP}"),
        help=f"comma-separated method names (default: the baselines {BASELINES} and LocoProp's "
        f"{LOCOPROP}); registered: {', '.join(bench.METHODS)}",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help="digits: offline, ships with scikit-learn (default); mnist: the official benchmark",
    )
    p.add_argument("--epochs", type=_positive_int, default=default_epochs, help=f"epochs (default {default_epochs})")
    p.add_argument(
        "--schedule-epochs",
        type=_positive_int,
        default=None,
        help="length of the warm-up/decay schedule (default: --epochs); e.g. 100 to stop the official schedule early",
    )
    p.add_argument("--subset", type=_positive_int, default=None, help="use the first N training examples")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: mnist 1000, digits 100")
    p.add_argument("--activation", choices=("tanh", "relu"), default="tanh")
    p.add_argument(
        "--data-dir",
        default=None,
        help="data directory (MNIST in DIR/mnist); else $LAYERWISE_DATA_DIR, else ~/.cache/layerwise",
    )
    p.add_argument("--download", action="store_true", help="fetch missing MNIST files (checksum-verified)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``layerwise`` command."""
    parser = argparse.ArgumentParser(
        prog="layerwise", description="Training with layer-wise losses: benchmarks and reports."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="run a benchmark").add_subparsers(dest="benchmark", required=True)
    ae = b.add_parser("autoencoder", help="deep autoencoder (LocoProp paper setup), methods side by side")
    _add_run_args(ae, 10)
    add_common_flags(ae, _positive_int)
    ae.add_argument("--lr", type=_lr_pairs, default={}, help="override learning rates: METHOD=LR,...")
    ae.add_argument(
        "--tuned", type=Path, default=None, help="tuned-values file (default: the one shipped for --dataset)"
    )
    ae.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    ae.add_argument(
        "--keep-going",
        action="store_true",
        help="when a method diverges, record it and go on with the next (exit status 1 at the end)",
    )
    ae.add_argument(
        "--tensorboard",
        type=Path,
        default=None,
        metavar="LOG_DIR",
        help="also log every epoch to TensorBoard (needs layerwise[tensorboard])",
    )
    tu = b.add_parser(
        "tune", help="lr sweep on the budget given (tune on the budget you report); writes a tuned-values file"
    )
    _add_run_args(tu, 4)
    add_common_flags(
        tu,
        _positive_int,
        unsupported={
            "out": "a sweep writes one tuned-values file: use --out-file",
        },
        out_required=False,
    )
    tu.add_argument("--points", type=_positive_int, default=5, help="grid points per method (half-decade steps)")
    tu.add_argument(
        "--grid",
        type=_grid_pair,
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="also sweep this hyper-parameter (repeatable), e.g. --grid damping=10,100,1000",
    )
    tu.add_argument(
        "--centre",
        choices=("default", "tuned"),
        default="default",
        help="centre of each lr grid: the method's default, or its lr in the shipped tuned-values file",
    )
    tu.add_argument(
        "--close",
        type=float,
        default=0.01,
        help="configurations within this fraction of the best are re-run with more seeds (default 0.01)",
    )
    tu.add_argument(
        "--seeds", type=_positive_int, default=3, help="seeds in all for a close call (default 3; 1: no re-runs)"
    )
    tu.add_argument(
        "--out-file",
        type=Path,
        default=None,
        help="where to write the tuned values (default: the file shipped for --dataset)",
    )
    st = b.add_parser("steptime", help="LocoProp step time against Adam and the PyPI locoprop port (equal T)")
    add_common_flags(st, _positive_int, unsupported=_TIMING)
    st.add_argument("--batch-size", type=_positive_int, default=1000)
    st.add_argument(
        "--steps",
        type=lambda t: tuple(_positive_int(v) for v in t.split(",")),
        default=(1, 5, 10),
        help="inner steps T to compare, comma-separated (default 1,5,10)",
    )
    st.add_argument("--repeats", type=_positive_int, default=10, help="timed steps per entry (default 10)")
    st.add_argument("--no-pypi", action="store_true", help="skip the PyPI locoprop port")
    te = b.add_parser(
        "telemetry", help="cost of per-loss-term gradient telemetry against plain and K-autograd.grad steps"
    )
    add_common_flags(te, _positive_int, unsupported=_TIMING)
    te.add_argument(
        "--k",
        type=lambda t: tuple(_positive_int(v) for v in t.split(",")),
        default=(2, 4, 8),
        help="numbers of loss terms K to compare, comma-separated, each <= 8 (default 2,4,8)",
    )
    te.add_argument(
        "--steps",
        type=_positive_int,
        default=100,
        help="steps per timed block of the plain and every=N paths, a multiple of --every (default 100)",
    )
    te.add_argument("--every", type=_positive_int, default=50, help="telemetry period of the sampled path (default 50)")
    te.add_argument("--repeats", type=_positive_int, default=5, help="timed rounds after a warm-up round (default 5)")
    te.add_argument("--batch-size", type=_positive_int, default=256)
    add_aux_parser(b, _positive_int)
    add_depth_parser(b, _positive_int)
    add_similarity_parser(b, _positive_int)
    add_parallel_parser(b, _positive_int)
    add_zstore_parser(b, _positive_int)
    rp = sub.add_parser("report", help="rebuild report and plots from saved results (several runs: mean and spread)")
    rp.add_argument("dirs", nargs="+", type=Path, help="run directories holding results.json")
    rp.add_argument("--out", type=Path, default=None, help="where to write (default: the first directory)")
    return parser


def _prepare(
    args: argparse.Namespace, evaluate_test: bool = True
) -> tuple[bench.AutoencoderConfig, bench.AutoencoderData]:
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ValueError(f"Invalid --device {args.device!r}: {exc}. Use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device!r} asked for CUDA, but torch sees no CUDA device. Use --device cpu.")
    cfg = bench.AutoencoderConfig(
        dataset=args.dataset,
        epochs=args.epochs,
        subset=args.subset,
        batch_size=args.batch_size,
        seed=args.seed,
        activation=args.activation,
        evaluate_test=evaluate_test,
        schedule_epochs=args.schedule_epochs,
    )
    data = bench.load_autoencoder_data(cfg, args.data_dir, download=args.download, device=device)
    return cfg, data


def _centres(names: list[str], dataset: str) -> dict[str, float]:
    methods = [bench.get_method(n) for n in names]
    return {n: lr for n, (lr, _) in bench.resolve_lrs(methods, {}, bench.load_tuned(bench.tuned_path(dataset))).items()}


def _run(args: argparse.Namespace, command: str) -> int:
    if args.command == "report":
        runs = bench.load_runs(args.dirs)
        path = bench.write_report(runs, args.out or args.dirs[0])
        print(f"wrote {path}")
        return 0
    if args.benchmark == "steptime":
        res = bench.run_steptime_benchmark(
            args.out,
            batch_size=args.batch_size,
            steps=args.steps,
            repeats=args.repeats,
            device=args.device,
            pypi=not args.no_pypi,
            command=command,
        )
        for name, v in res["median_step_s"].items():
            print(f"{name:>34}: {v:.4f} s  ({res['vs_adam'][name]:.2f}x Adam)")
        print(f"wrote {args.out / 'report.md'}")
        return 0
    if args.benchmark == "telemetry":
        res = bench.run_telemetry_benchmark(
            args.out,
            k=args.k,
            steps=args.steps,
            every=args.every,
            repeats=args.repeats,
            batch_size=args.batch_size,
            device=args.device,
            command=command,
        )
        for r in res["rows"]:
            print(
                f"K={r['k']}: plain {1e3 * r['plain_s']:.1f} ms, K x autograd.grad {1e3 * r['kgrad_s']:.1f} ms "
                f"(+ stats {1e3 * r['kgrad_stats_s']:.1f} ms), every=1 {1e3 * r['every1_s']:.1f} ms "
                f"({r['every1_vs_kgrad']:.2f}x; {r['every1_vs_kgrad_stats']:.2f}x), every={args.every} "
                f"{1e3 * r['everyN_s']:.1f} ms ({100 * r['everyN_overhead']:+.1f}% vs plain)"
            )
        print(f"wrote {args.out / 'report.md'}")
        return 0
    if args.benchmark == "aux":
        return run_aux(args, command)
    if args.benchmark == "depth":
        return run_depth(args, command)
    if args.benchmark == "similarity":
        return run_similarity(args, command)
    if args.benchmark == "layer-parallel":
        return run_parallel(args, command)
    if args.benchmark == "zstore":
        return run_zstore(args, command)
    if args.benchmark == "tune":
        cfg, data = _prepare(args, evaluate_test=False)
        out_file = args.out_file or bench.tuned_path(cfg.dataset)
        result = bench.tune_learning_rates(
            args.methods,
            cfg,
            data,
            out_file,
            points=args.points,
            progress=not args.no_progress,
            command=command,
            grid=dict(args.grid),
            close=args.close,
            seeds=args.seeds,
            centres=_centres(args.methods, cfg.dataset) if args.centre == "tuned" else None,
            resume=args.resume,
        )
        for name, entry in result["methods"].items():
            print(f"{name:>10}: lr={entry['lr']:.3g}  sweep={entry['sweep']}")
        print(f"wrote {out_file}")
        return 0
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
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            command=command,
            sinks=[sink] if sink else None,
            keep_going=args.keep_going,
        )
    finally:
        if sink:
            sink.close()
    path = bench.write_report([results], args.out)
    print(f"wrote {args.out / bench.RESULTS_FILE} and {path}")
    diverged = [m["error"] for m in results["methods"].values() if m["status"] == "diverged"]
    for message in diverged:
        print(f"layerwise: error: {message}", file=sys.stderr)
    return 1 if diverged else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (errors print one clear line and return 1)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        check_common_flags(args, args.benchmark)
    command = "layerwise " + " ".join(shlex.quote(a) for a in argv)
    try:
        return _run(args, command)
    except KeyboardInterrupt:
        print("interrupted: the checkpoint of the last complete epoch is kept; continue with --resume", file=sys.stderr)
        return 130
    except (bench.TrainingDiverged, DataError, ValueError, FileExistsError, FileNotFoundError, ImportError) as exc:
        print(f"layerwise: error: {exc}", file=sys.stderr)
        return 1
