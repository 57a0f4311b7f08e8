"""``layerwise bench aux``: its arguments and its thin shell over :func:`layerwise_bench.run_aux_benchmark`."""

from __future__ import annotations

import argparse
import dataclasses

import layerwise_bench as bench
from layerwise.data import DATASETS

from ..deep_mlp._aux_bench import AUX_METHODS
from ._common import add_data_args, config_from_args, names_from, numbers, positive_int, record_files, run_options
from ._depth import add_flags
from ._subcommand import Outcome, Subcommand

__all__ = ["AUX"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], found {text!r}")
    return value


def _add_aux_args(p: argparse.ArgumentParser) -> None:
    add_flags(
        p,
        {**dataclasses.asdict(bench.AuxConfig()), "methods": list(AUX_METHODS), "seeds": [0, 1, 2], "lr": 0.05},
        {
            "methods": (names_from(AUX_METHODS, "method"), f"comma-separated (default all): {', '.join(AUX_METHODS)}"),
            "seeds": (
                numbers(int, lambda vs: len(set(vs)) == len(vs), "distinct comma-separated whole numbers (e.g. 0,1,2)"),
                "comma-separated seeds (default 0,1,2)",
            ),
            "dataset": (DATASETS, "mnist (default) or digits (offline)"),
        },
        add_data_args,
        {
            "depth": (positive_int, "hidden layers (default {depth})"),
            "width": (positive_int, "hidden units (default {width})"),
            "heads": (positive_int, "auxiliary heads, evenly spaced (default {heads})"),
            "epochs": (positive_int, "epochs (default {epochs})"),
            "batch_size": (positive_int, "batch size (default {batch_size})"),
            "optimizer": (("sgd", "adam"), "sgd (momentum {momentum}, default) or adam"),
            "lr": (float, "learning rate of the model's optimizer (default {lr})"),
            "target_acc": (_fraction, "test accuracy to reach (default {target_acc})"),
            "subset": (positive_int, "use the first N training examples"),
        },
    )


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
