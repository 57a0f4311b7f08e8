"""``layerwise bench similarity``: the subcommand's arguments and its thin shell over
:func:`layerwise_bench.run_similarity_benchmark`."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import layerwise_bench as bench

from .._depth_model import ACTIVATIONS
from ._common import add_common_flags, config_from_args, run_options
from ._depth import _positive_float, add_decoupled_args, add_mlp_data_args

__all__ = ["add_similarity_parser", "run_similarity"]


def add_similarity_parser(b: argparse._SubParsersAction, positive_int: Callable[[str], int]) -> None:
    """The ``similarity`` subcommand of ``layerwise bench``."""
    d = dataclasses.replace(bench.DepthConfig(), epochs=10)
    p = b.add_parser(
        "similarity",
        help="decoupled vs backprop on one plain MLP: test-accuracy gap, per-layer CKA, parameter distance",
    )
    add_common_flags(
        p, positive_int, unsupported={"resume": "a similarity run is one short comparison: rerun it"}, seed=d.seed
    )
    p.add_argument("--depth", type=positive_int, default=5, help="hidden layers (default 5)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="tanh")
    add_mlp_data_args(p, d, positive_int)
    p.add_argument("--adam-lr", type=_positive_float, default=d.adam_lr, help=f"backprop Adam (default {d.adam_lr:g})")
    add_decoupled_args(p, d, positive_int)
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")


def run_similarity(args: argparse.Namespace, command: str) -> int:
    """Run ``layerwise bench similarity``; prints the verdict lines."""
    res = bench.run_similarity_benchmark(
        args.out,
        depth=args.depth,
        activation=args.activation,
        cfg=config_from_args(bench.DepthConfig, args),
        **run_options(args, command),
    )
    for line in bench.similarity_verdict(res):
        print(line)
    print(f"wrote {args.out / bench.RESULTS_FILE} and {args.out / 'report.md'}")
    return 0
