"""``layerwise bench aux``, ``depth`` and ``similarity``: the deep-MLP benchmarks' arguments and their thin shells over
:func:`layerwise_bench.run_aux_benchmark`, :func:`~layerwise_bench.run_depth_benchmark` and
:func:`~layerwise_bench.run_similarity_benchmark`."""

from __future__ import annotations

import argparse
import dataclasses

import layerwise_bench as bench
from layerwise.data import DATASETS

from ..deep_mlp._aux_bench import AUX_METHODS
from ..deep_mlp._depth_methods import DEPTH_METHODS
from ..deep_mlp._depth_model import ACTIVATIONS, INITS
from ._common import (
    add_data_args,
    add_flags,
    config_from_args,
    names_from,
    number,
    numbers,
    pick,
    positive_float,
    positive_int,
    record_files,
    run_options,
)
from ._subcommand import Outcome, Subcommand

__all__ = ["AUX", "DECOUPLED", "DEPTH", "MLP_DATA", "SIMILARITY"]


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
            "dataset": (DATASETS, "mnist (default), digits (offline) or mnist1d (1-D signals, generated)"),
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
            "target_acc": (
                number(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
                "test accuracy to reach (default {target_acc})",
            ),
            "subset": (positive_int, "use the first N training examples"),
        },
    )


def _run_aux(args: argparse.Namespace, command: str) -> Outcome:
    if args.lr <= 0:
        raise ValueError(f"Invalid --lr {args.lr}: expected a number > 0.")
    cfg = config_from_args(bench.AuxConfig, args)
    bench.run_aux_benchmark(
        args.out, methods=args.methods, seeds=args.seeds, cfg=cfg, resume=args.resume, **run_options(args, command)
    )
    return Outcome(wrote=record_files(args.out))


AUX = Subcommand(
    "aux",
    "weightings of deep-supervision losses on a deep plain tanh MLP, several seeds",
    _add_aux_args,
    _run_aux,
    unsupported={"seed": "it runs every seed of --seeds: use --seeds"},
)

#: the plain-MLP and data flags shared by ``bench depth`` and ``bench similarity``.
MLP_DATA = (
    {
        "width": (positive_int, "hidden units (default {width})"),
        "dataset": (DATASETS, "mnist (default), digits (offline) or mnist1d (1-D signals, generated)"),
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
    cfg = config_from_args(bench.DepthConfig, args)
    res = bench.run_depth_benchmark(
        args.out, **pick(args, "depths", "activations", "methods", "resume"), cfg=cfg, **run_options(args, command)
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
    cfg = config_from_args(bench.DepthConfig, args)
    res = bench.run_similarity_benchmark(
        args.out, **pick(args, "depth", "activation"), cfg=cfg, **run_options(args, command)
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
