"""``layerwise bench depth``: the subcommand's arguments and its thin shell over
:func:`layerwise_bench.run_depth_benchmark`."""

from __future__ import annotations

import argparse

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

__all__ = ["DEPTH", "add_decoupled_args", "add_mlp_data_args"]


_depths = numbers(int, lambda vs: min(vs) >= 1, "comma-separated hidden-layer counts >= 1 (e.g. 10,20,50)")


def add_mlp_data_args(p: argparse.ArgumentParser, d: bench.DepthConfig) -> None:
    """The plain-MLP and data arguments shared by ``bench depth`` and ``bench similarity`` (defaults from ``d``)."""
    p.add_argument("--width", type=positive_int, default=d.width, help=f"hidden units (default {d.width})")
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="mnist (default) or digits (offline)")
    add_data_args(p)
    p.add_argument("--subset", type=positive_int, default=None, help="use the first N training examples")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"default {d.batch_size}")


def add_decoupled_args(p: argparse.ArgumentParser, d: bench.DepthConfig) -> None:
    """The decoupled-training arguments shared by ``bench depth`` and ``bench similarity`` (defaults from ``d``)."""
    p.add_argument(
        "--decoupled-lr",
        type=positive_float,
        default=d.decoupled_lr,
        help=f"per-block Adam (default {d.decoupled_lr:g})",
    )
    p.add_argument("--z-lr", type=positive_float, default=d.z_lr, help=f"default {d.z_lr:g}")
    p.add_argument("--z-steps", type=positive_int, default=d.z_steps, help=f"default {d.z_steps}")
    p.add_argument("--mu-start", type=positive_float, default=d.mu_start, help=f"default {d.mu_start:g}")
    p.add_argument(
        "--mu-factor",
        type=positive_float,
        default=d.mu_factor,
        help=f"mu grows by this factor every epoch (default {d.mu_factor:g})",
    )


def _add_depth_args(p: argparse.ArgumentParser) -> None:
    d = bench.DepthConfig()
    p.add_argument(
        "--depths", type=_depths, default=[10, 20, 50], help="hidden layers, comma-separated (default 10,20,50)"
    )
    p.add_argument(
        "--activations",
        type=names_from(ACTIVATIONS, "activation"),
        default=list(ACTIVATIONS),
        help="comma-separated (default tanh,sigmoid)",
    )
    p.add_argument(
        "--methods",
        type=names_from(DEPTH_METHODS, "method"),
        default=list(DEPTH_METHODS),
        help=f"comma-separated (default all): {', '.join(DEPTH_METHODS)}",
    )
    add_mlp_data_args(p, d)
    p.add_argument(
        "--sgd-lr",
        type=positive_float,
        default=d.sgd_lr,
        help=f"bp-default-sgd and deep-supervision (momentum {d.momentum}; default {d.sgd_lr:g})",
    )
    p.add_argument("--adam-lr", type=positive_float, default=d.adam_lr, help=f"bp-*-adam (default {d.adam_lr:g})")
    p.add_argument("--decoupled-init", choices=INITS, default=d.decoupled_init, help=f"default {d.decoupled_init}")
    p.add_argument(
        "--decoupled-mode",
        choices=("joint", "alternating", "z-first"),
        default=d.decoupled_mode,
        help=f"decoupled (stored z): default {d.decoupled_mode}",
    )
    p.add_argument(
        "--z-order",
        choices=("jacobi", "sweep"),
        default=d.z_order,
        help=f"decoupled (stored z): z-steps all at once or top-down (default {d.z_order})",
    )
    p.add_argument(
        "--forward-z-steps",
        type=positive_int,
        default=d.forward_z_steps,
        help=f"decoupled-forward: sweeps per step (default {d.forward_z_steps})",
    )
    p.add_argument(
        "--delta",
        action="store_true",
        help="decoupled-forward: keep the target changes apart from the forward activations (first order, "
        "survives float32)",
    )
    p.add_argument(
        "--activation-slopes",
        action="store_true",
        help="decoupled: count the sigmoid's slope 1/4 in the z-step's curvature bound (16x larger z steps)",
    )
    add_decoupled_args(p, d)
    p.add_argument(
        "--consistency-epochs",
        type=int,
        default=d.consistency_epochs,
        help=f"decoupled: epochs refitting the last block on the plain network at the end "
        f"(default {d.consistency_epochs}; 0: none)",
    )
    p.add_argument(
        "--locoprop-gamma", type=positive_float, default=d.locoprop_gamma, help=f"default {d.locoprop_gamma:g}"
    )
    p.add_argument(
        "--locoprop-damping", type=positive_float, default=d.locoprop_damping, help=f"default {d.locoprop_damping:g}"
    )
    p.add_argument(
        "--ds-every",
        type=positive_int,
        default=d.ds_every,
        help=f"deep supervision: a head after every N-th hidden layer (default {d.ds_every})",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=d.dtype,
        help=f"of the data, the models and the z store (default {d.dtype})",
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
