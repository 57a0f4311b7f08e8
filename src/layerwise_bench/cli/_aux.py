"""``layerwise bench aux``: the subcommand's arguments and its thin shell over
:func:`layerwise_bench.run_aux_benchmark`."""

from __future__ import annotations

import argparse

import layerwise_bench as bench
from layerwise.data import DATASETS

from ..deep_mlp._aux_bench import AUX_METHODS
from ._common import add_data_args, config_from_args, names_from, numbers, positive_int, record_files, run_options
from ._subcommand import Outcome, Subcommand

__all__ = ["AUX"]


_seeds = numbers(int, lambda vs: len(set(vs)) == len(vs), "distinct comma-separated whole numbers (e.g. 0,1,2)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], found {text!r}")
    return value


def _add_aux_args(ax: argparse.ArgumentParser) -> None:
    ax.add_argument(
        "--methods",
        type=names_from(AUX_METHODS, "method"),
        default=list(AUX_METHODS),
        help=f"comma-separated (default all): {', '.join(AUX_METHODS)}",
    )
    ax.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    ax.add_argument("--dataset", choices=DATASETS, default="mnist", help="mnist (default) or digits (offline)")
    add_data_args(ax)
    ax.add_argument("--depth", type=positive_int, default=20, help="hidden layers (default 20)")
    ax.add_argument("--width", type=positive_int, default=256, help="hidden units (default 256)")
    ax.add_argument("--heads", type=positive_int, default=3, help="auxiliary heads, evenly spaced (default 3)")
    ax.add_argument("--epochs", type=positive_int, default=5, help="epochs (default 5)")
    ax.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    ax.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="sgd (momentum 0.9, default) or adam")
    ax.add_argument("--lr", type=float, default=0.05, help="learning rate of the model's optimizer (default 0.05)")
    ax.add_argument("--target-acc", type=_fraction, default=0.9, help="test accuracy to reach (default 0.9)")
    ax.add_argument("--subset", type=positive_int, default=None, help="use the first N training examples")


def _run_aux(args: argparse.Namespace, command: str) -> Outcome:
    if args.lr <= 0:
        raise ValueError(f"Invalid --lr {args.lr}: expected a number > 0.")
    bench.run_aux_benchmark(
        args.out,
        methods=args.methods,
        seeds=args.seeds,
        cfg=config_from_args(bench.AuxConfig, args),
        resume=args.resume,
        **run_options(args, command),
    )
    return Outcome(wrote=record_files(args.out))


AUX = Subcommand(
    "aux",
    "weightings of deep-supervision losses on a deep plain tanh MLP, several seeds",
    _add_aux_args,
    _run_aux,
    unsupported={"seed": "it runs every seed of --seeds: use --seeds"},
)
