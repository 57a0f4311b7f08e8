"""``layerwise bench similarity``: its arguments and its thin shell over
:func:`layerwise_bench.run_similarity_benchmark`."""

from __future__ import annotations

import argparse
import dataclasses

import layerwise_bench as bench

from ..deep_mlp._depth_model import ACTIVATIONS
from ._common import config_from_args, positive_float, positive_int, record_files, run_options
from ._depth import DECOUPLED, MLP_DATA, add_flags
from ._subcommand import Outcome, Subcommand

__all__ = ["SIMILARITY"]


def _add_similarity_args(p: argparse.ArgumentParser) -> None:
    add_flags(
        p,
        {**dataclasses.asdict(bench.DepthConfig()), "epochs": 10, "depth": 5, "activation": "tanh"},
        {"depth": (positive_int, "hidden layers (default {depth})"), "activation": (tuple(ACTIVATIONS), None)},
        *MLP_DATA,
        {"adam_lr": (positive_float, "backprop Adam (default {adam_lr:g})")},
        DECOUPLED,
    )


def _run_similarity(args: argparse.Namespace, command: str) -> Outcome:
    res = bench.run_similarity_benchmark(
        args.out,
        depth=args.depth,
        activation=args.activation,
        cfg=config_from_args(bench.DepthConfig, args),
        **run_options(args, command),
    )
    return Outcome(lines=bench.similarity_verdict(res), wrote=record_files(args.out))


SIMILARITY = Subcommand(
    "similarity",
    "decoupled vs backprop on one plain MLP: test-accuracy gap, per-layer CKA, parameter distance",
    _add_similarity_args,
    _run_similarity,
    unsupported={"resume": "a similarity run is one short comparison: rerun it"},
    seed=bench.DepthConfig().seed,
)
