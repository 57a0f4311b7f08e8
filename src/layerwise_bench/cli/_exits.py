"""``layerwise bench exits``: its arguments and its thin shell over :func:`layerwise_bench.run_exits_benchmark`."""

from __future__ import annotations

import argparse
import dataclasses

import layerwise_bench as bench

from ..exits._bench import EXIT_METHODS
from ._common import add_flags, config_from_args, names_from, numbers, pick, positive_float, positive_int, record_files
from ._subcommand import Outcome, Subcommand

__all__ = ["EXITS"]


def _add_args(p: argparse.ArgumentParser) -> None:
    add_flags(
        p,
        {**dataclasses.asdict(bench.ExitsConfig()), "methods": list(EXIT_METHODS), "seeds": [0, 1, 2]},
        {
            "methods": (
                names_from(EXIT_METHODS, "method"),
                f"comma-separated (default all; none always runs first, its time is the budget): "
                f"{', '.join(EXIT_METHODS)}",
            ),
            "seeds": (
                numbers(int, lambda vs: len(set(vs)) == len(vs), "distinct comma-separated whole numbers (e.g. 0,1,2)"),
                "comma-separated seeds (default 0,1,2)",
            ),
            "depth": (positive_int, "transformer blocks (default {depth}); an exit after each but the last"),
            "width": (positive_int, "model width (default {width})"),
            "heads": (positive_int, "attention heads (default {heads})"),
            "context": (positive_int, "bytes per window (default {context})"),
            "subset": (positive_int, "training windows (default {subset})"),
            "epochs": (positive_int, "epochs (default {epochs})"),
            "batch_size": (positive_int, "batch size (default {batch_size})"),
            "lr": (positive_float, "AdamW's constant learning rate (default {lr:g})"),
            "eval_windows": (positive_int, "validation windows (default {eval_windows})"),
            "evals": (positive_int, "evaluations per run, off the clock (default {evals})"),
            "telemetry_every": (
                positive_int,
                "gradient cosines every N steps, off the clock (default {telemetry_every})",
            ),
        },
    )


def _run(args: argparse.Namespace, command: str) -> Outcome:
    cfg = config_from_args(bench.ExitsConfig, args)
    bench.run_exits_benchmark(
        args.out,
        methods=args.methods,
        seeds=args.seeds,
        cfg=cfg,
        resume=args.resume,
        command=command,
        **pick(args, "device", "overwrite", "progress"),
    )
    return Outcome(wrote=record_files(args.out))


EXITS = Subcommand(
    "exits",
    "deep supervision on a byte-level transformer LM: early exits through the shared head, weightings compared "
    "at equal steps and equal wall-clock, several seeds",
    _add_args,
    _run,
    unsupported={"seed": "it runs every seed of --seeds: use --seeds"},
)
