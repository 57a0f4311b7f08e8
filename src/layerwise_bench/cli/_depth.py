"""``layerwise bench depth``: the subcommand's arguments and its thin shell over
:func:`layerwise_bench.run_depth_benchmark`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import layerwise_bench as bench
from layerwise.data import DATASETS

from .._depth_methods import DEPTH_METHODS
from .._depth_model import ACTIVATIONS, INITS
from ._common import add_common_flags, config_from_args, run_options

__all__ = ["add_depth_parser", "add_mlp_data_args", "run_depth"]


def _choices(allowed: list[str] | tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad}; expected some of: {', '.join(allowed)}")
        return names

    return parse


def _depths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated hidden-layer counts >= 1 (e.g. 10,20,50), found {text!r}"
        )
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, found {text!r}")
    return value


def add_mlp_data_args(p: argparse.ArgumentParser, d: bench.DepthConfig, positive_int: Callable[[str], int]) -> None:
    """The plain-MLP and data arguments shared by ``bench depth`` and ``bench similarity`` (defaults from ``d``)."""
    p.add_argument("--width", type=positive_int, default=d.width, help=f"hidden units (default {d.width})")
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="mnist (default) or digits (offline)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="data directory (MNIST in DIR/mnist); else $LAYERWISE_DATA_DIR, else ~/.cache/layerwise",
    )
    p.add_argument("--download", action="store_true", help="fetch missing MNIST files (checksum-verified)")
    p.add_argument("--subset", type=positive_int, default=None, help="use the first N training examples")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"default {d.batch_size}")


def add_decoupled_args(p: argparse.ArgumentParser, d: bench.DepthConfig, positive_int: Callable[[str], int]) -> None:
    """The decoupled-training arguments shared by ``bench depth`` and ``bench similarity`` (defaults from ``d``)."""
    p.add_argument(
        "--decoupled-lr",
        type=_positive_float,
        default=d.decoupled_lr,
        help=f"per-block Adam (default {d.decoupled_lr:g})",
    )
    p.add_argument("--z-lr", type=_positive_float, default=d.z_lr, help=f"default {d.z_lr:g}")
    p.add_argument("--z-steps", type=positive_int, default=d.z_steps, help=f"default {d.z_steps}")
    p.add_argument("--mu-start", type=_positive_float, default=d.mu_start, help=f"default {d.mu_start:g}")
    p.add_argument(
        "--mu-factor",
        type=_positive_float,
        default=d.mu_factor,
        help=f"mu grows by this factor every epoch (default {d.mu_factor:g})",
    )


def add_depth_parser(b: argparse._SubParsersAction, positive_int: Callable[[str], int]) -> None:
    """The ``depth`` subcommand of ``layerwise bench``."""
    d = bench.DepthConfig()
    p = b.add_parser(
        "depth",
        help="plain deep MLPs (tanh/sigmoid): backprop baselines against decoupled training, "
        "LocoProp and deep supervision; per-layer gradient norms",
    )
    add_common_flags(p, positive_int, seed=d.seed)
    p.add_argument(
        "--depths", type=_depths, default=[10, 20, 50], help="hidden layers, comma-separated (default 10,20,50)"
    )
    p.add_argument(
        "--activations",
        type=_choices(list(ACTIVATIONS), "activation"),
        default=list(ACTIVATIONS),
        help="comma-separated (default tanh,sigmoid)",
    )
    p.add_argument(
        "--methods",
        type=_choices(list(DEPTH_METHODS), "method"),
        default=list(DEPTH_METHODS),
        help=f"comma-separated (default all): {', '.join(DEPTH_METHODS)}",
    )
    add_mlp_data_args(p, d, positive_int)
    p.add_argument(
        "--sgd-lr",
        type=_positive_float,
        default=d.sgd_lr,
        help=f"bp-default-sgd and deep-supervision (momentum {d.momentum}; default {d.sgd_lr:g})",
    )
    p.add_argument("--adam-lr", type=_positive_float, default=d.adam_lr, help=f"bp-*-adam (default {d.adam_lr:g})")
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
    add_decoupled_args(p, d, positive_int)
    p.add_argument(
        "--consistency-epochs",
        type=int,
        default=d.consistency_epochs,
        help=f"decoupled: epochs refitting the last block on the plain network at the end "
        f"(default {d.consistency_epochs}; 0: none)",
    )
    p.add_argument(
        "--locoprop-gamma", type=_positive_float, default=d.locoprop_gamma, help=f"default {d.locoprop_gamma:g}"
    )
    p.add_argument(
        "--locoprop-damping", type=_positive_float, default=d.locoprop_damping, help=f"default {d.locoprop_damping:g}"
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")


def run_depth(args: argparse.Namespace, command: str) -> int:
    """Run ``layerwise bench depth``; returns 0 (a diverged run is a recorded outcome, listed on stdout)."""
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
    print(f"wrote {args.out / bench.RESULTS_FILE} and {args.out / 'report.md'}")
    diverged = [f"{k}: {e['error']}" for k, e in res["runs"].items() if e["status"] == "diverged"]
    for message in diverged:
        print(f"layerwise: diverged: {message}")
    return 0
