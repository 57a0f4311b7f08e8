"""``layerwise bench layer-parallel``: the subcommand's arguments and its thin shell over
:func:`layerwise_bench.run_parallel_benchmark`."""

from __future__ import annotations

import argparse

import layerwise_bench as bench
from layerwise.data import DATASETS

from ..systems._parallel import PARALLEL_CONFIGS
from ._common import positive_int
from ._subcommand import Outcome, Subcommand

__all__ = ["PARALLEL", "ZSTORE"]


_PARALLEL = {
    "device": "its worker processes train on the CPU over gloo",
    "threads": "each configuration sets its processes and threads (1 x 1, 2 x 1, 1 x 2)",
    "seed": "the compared configurations start from one fixed network",
    "resume": "a timing run is not resumable: rerun it",
    "progress": "it shows no progress bars",
}
_ZSTORE = {
    "device": "it measures the CPU memory (peak RSS) of a worker process",
    "seed": "the store and network are fixed; memory does not depend on a seed",
    "resume": "each storage option is one short measurement: rerun it",
    "progress": "it shows no progress bars",
}


def _add_mlp_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--data-dir", default=None, help="data directory (MNIST in DIR/mnist)")
    p.add_argument("--depth", type=positive_int, default=10, help="blocks of the plain tanh MLP (default 10)")
    p.add_argument("--width", type=positive_int, default=1000, help="hidden units (default 1000)")


def _add_parallel_args(p: argparse.ArgumentParser) -> None:
    _add_mlp_args(p)
    p.add_argument("--subset", type=positive_int, default=20000, help="training examples (default 20000)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--z-steps", type=positive_int, default=1)
    p.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--configs",
        default=None,
        help=f"semicolon-separated subset of the configurations (default all): {'; '.join(PARALLEL_CONFIGS)}",
    )


def _run_parallel(args: argparse.Namespace, command: str) -> Outcome:
    configs = [c.strip() for c in args.configs.split(";")] if args.configs else None
    for c in configs or []:
        if c not in PARALLEL_CONFIGS:
            raise ValueError(f"Invalid --configs entry {c!r}; expected some of: {'; '.join(PARALLEL_CONFIGS)}")
    res = bench.run_parallel_benchmark(
        args.out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        depth=args.depth,
        width=args.width,
        subset=args.subset,
        batch_size=args.batch_size,
        z_steps=args.z_steps,
        repeats=args.repeats,
        configs=configs,
        command=command,
        overwrite=args.overwrite,
    )
    lines = [
        f"{name:>52}: {v['median_epoch_s']:.2f} s/epoch, train loss {v['train_loss']:.4f}"
        for name, v in res["summary"].items()
    ]
    return Outcome(lines=lines, wrote=[str(args.out / "report.md")])


def _add_zstore_args(p: argparse.ArgumentParser) -> None:
    _add_mlp_args(p)
    p.add_argument("--n", type=positive_int, default=None, help="examples (default: the whole training set)")
    p.add_argument("--steps", type=positive_int, default=50, help="decoupled steps after building the store")


def _run_zstore(args: argparse.Namespace, command: str) -> Outcome:
    res = bench.run_zstore_benchmark(
        args.out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        n=args.n,
        depth=args.depth,
        width=args.width,
        steps=args.steps,
        threads=args.threads or 1,
        command=command,
        overwrite=args.overwrite,
    )
    lines = [
        f"{name:>24}: z {r['z_bytes'] / 2**30:.2f} GiB, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"
        for name, r in res["options"].items()
    ]
    return Outcome(lines=lines, wrote=[str(args.out / "report.md")])


PARALLEL = Subcommand(
    "layer-parallel",
    "decoupled training: 2 processes (one stage each) against 1, and backprop",
    _add_parallel_args,
    _run_parallel,
    unsupported=_PARALLEL,
)
ZSTORE = Subcommand(
    "zstore",
    "memory of the decoupled z store (float32/bfloat16, in memory/memory-mapped)",
    _add_zstore_args,
    _run_zstore,
    unsupported=_ZSTORE,
    threads_help="torch CPU threads of the worker process (default 1)",
)
