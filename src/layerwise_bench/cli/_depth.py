"""``layerwise bench depth``: its arguments and its thin shell over :func:`layerwise_bench.run_depth_benchmark`;
:func:`add_flags`, the one way the deep-MLP and systems subcommands declare their arguments."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import layerwise_bench as bench
from layerwise.data import DATASETS

from ..deep_mlp._depth_methods import DEPTH_METHODS
from ..deep_mlp._depth_model import ACTIVATIONS, INITS
from ._common import (
    add_data_args,
    config_from_args,
    names_from,
    numbers,
    positive_float,
    positive_int,
    record_files,
    run_options,
)
from ._subcommand import Outcome, Subcommand

__all__ = ["DECOUPLED", "DEPTH", "MLP_DATA", "add_flags"]

#: a flag: ``(kind, help)``, kind an ``argparse`` type, a tuple of choices or ``bool`` (a switch); the help's
#: ``{field}``s are filled from the defaults.
Flags = Mapping[str, tuple[Any, str | None]]


def add_flags(p: argparse.ArgumentParser, values: dict[str, Any], *groups: Flags | Callable[[Any], None]) -> None:
    """Add ``--field-name`` for every field of every group in order, defaulting to its entry in ``values`` (a
    callable group adds its own flags)."""
    for group in groups:
        if callable(group):
            group(p)
            continue
        for name, (kind, text) in group.items():
            how = {"action": "store_true"} if kind is bool else {"choices": kind} if isinstance(kind, tuple) else {}
            p.add_argument(
                "--" + name.replace("_", "-"),
                **(how or {"type": kind}),
                default=values.get(name),
                help=text and text.format(**values),
            )


#: the plain-MLP and data flags shared by ``bench depth`` and ``bench similarity``.
MLP_DATA = (
    {
        "width": (positive_int, "hidden units (default {width})"),
        "dataset": (DATASETS, "mnist (default) or digits (offline)"),
    },
    add_data_args,
    {
        "subset": (positive_int, "use the first N training examples"),
        "epochs": (positive_int, "epochs (default {epochs})"),
        "batch_size": (positive_int, "default {batch_size}"),
    },
)
#: the decoupled-training flags shared by ``bench depth`` and ``bench similarity``.
DECOUPLED = {
    "decoupled_lr": (positive_float, "per-block Adam (default {decoupled_lr:g})"),
    "z_lr": (positive_float, "default {z_lr:g}"),
    "z_steps": (positive_int, "default {z_steps}"),
    "mu_start": (positive_float, "default {mu_start:g}"),
    "mu_factor": (positive_float, "mu grows by this factor every epoch (default {mu_factor:g})"),
}


def _add_depth_args(p: argparse.ArgumentParser) -> None:
    values = dataclasses.asdict(bench.DepthConfig())
    add_flags(
        p,
        {**values, "depths": [10, 20, 50], "activations": list(ACTIVATIONS), "methods": list(DEPTH_METHODS)},
        {
            "depths": (
                numbers(int, lambda vs: min(vs) >= 1, "comma-separated hidden-layer counts >= 1 (e.g. 10,20,50)"),
                "hidden layers, comma-separated (default 10,20,50)",
            ),
            "activations": (names_from(ACTIVATIONS, "activation"), "comma-separated (default tanh,sigmoid)"),
            "methods": (
                names_from(DEPTH_METHODS, "method"),
                f"comma-separated (default all): {', '.join(DEPTH_METHODS)}",
            ),
        },
        *MLP_DATA,
        {
            "sgd_lr": (positive_float, "bp-default-sgd and deep-supervision (momentum {momentum}; default {sgd_lr:g})"),
            "adam_lr": (positive_float, "bp-*-adam (default {adam_lr:g})"),
            "decoupled_init": (INITS, "default {decoupled_init}"),
            "decoupled_mode": (("joint", "alternating", "z-first"), "decoupled (stored z): default {decoupled_mode}"),
            "z_order": (
                ("jacobi", "sweep"),
                "decoupled (stored z): z-steps all at once or top-down (default {z_order})",
            ),
            "forward_z_steps": (positive_int, "decoupled-forward: sweeps per step (default {forward_z_steps})"),
            "delta": (
                bool,
                "decoupled-forward: keep the target changes apart from the forward activations (first order, "
                "survives float32)",
            ),
            "activation_slopes": (
                bool,
                "decoupled: count the sigmoid's slope 1/4 in the z-step's curvature bound (16x larger z steps)",
            ),
        },
        DECOUPLED,
        {
            "consistency_epochs": (
                int,
                "decoupled: epochs refitting the last block on the plain network at the end "
                "(default {consistency_epochs}; 0: none)",
            ),
            "locoprop_gamma": (positive_float, "default {locoprop_gamma:g}"),
            "locoprop_damping": (positive_float, "default {locoprop_damping:g}"),
            "ds_every": (positive_int, "deep supervision: a head after every N-th hidden layer (default {ds_every})"),
            "dtype": (("float32", "float64"), "of the data, the models and the z store (default {dtype})"),
        },
    )


def _run_depth(args: argparse.Namespace, command: str) -> Outcome:
    """A diverged run is a recorded outcome, listed on stdout (exit status 0)."""
    if args.consistency_epochs < 0:
        raise ValueError(f"Invalid --consistency-epochs {args.consistency_epochs}: expected a whole number >= 0.")
    res = bench.run_depth_benchmark(
        args.out,
        depths=args.depths,
        activations=args.activations,
        methods=args.methods,
        cfg=config_from_args(bench.DepthConfig, args),
        resume=args.resume,
        **run_options(args, command),
    )
    diverged = [f"layerwise: diverged: {k}: {e['error']}" for k, e in res["runs"].items() if e["status"] == "diverged"]
    return Outcome(lines=diverged, wrote=record_files(args.out))


DEPTH = Subcommand(
    "depth",
    "plain deep MLPs (tanh/sigmoid): backprop baselines against decoupled training, LocoProp and deep "
    "supervision; per-layer gradient norms",
    _add_depth_args,
    _run_depth,
    seed=bench.DepthConfig().seed,
)
