"""``layerwise bench layer-parallel``: the subcommand's arguments and its thin shell over
:func:`layerwise_bench.run_parallel_benchmark`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import layerwise_bench as bench
from layerwise.data import DATASETS

from ..systems._parallel import PARALLEL_CONFIGS
from ._common import add_flags, positive_int
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


_MLP = {
    "dataset": (DATASETS, None),
    "data_dir": (str, "data directory (MNIST in DIR/mnist)"),
    "depth": (positive_int, "blocks of the plain tanh MLP (default {depth})"),
    "width": (positive_int, "hidden units (default {width})"),
}
_PARALLEL_FLAGS = {
    **_MLP,
    "subset": (positive_int, "training examples (default {subset})"),
    "batch_size": (positive_int, None),
    "z_steps": (positive_int, None),
    "repeats": (positive_int, "interleaved rounds (default {repeats})"),
    "configs": (str, f"semicolon-separated subset of the configurations (default all): {'; '.join(PARALLEL_CONFIGS)}"),
}
_ZSTORE_FLAGS = {
    **_MLP,
    "n": (positive_int, "examples (default: the whole training set)"),
    "steps": (positive_int, "decoupled steps after building the store"),
}
_DEFAULTS = {"dataset": "mnist", "depth": 10, "width": 1000, "subset": 20000, "batch_size": 128, "z_steps": 1}


def _run(
    args: argparse.Namespace, command: str, run: Callable[..., Any], flags: Any, line: Callable[..., str], **kw: Any
) -> Outcome:
    """Run the benchmark with its flags' values; print ``line(name, result)`` per configuration or option."""
    res = run(args.out, **{k: getattr(args, k) for k in flags}, command=command, overwrite=args.overwrite, **kw)
    rows = res["summary" if "summary" in res else "options"]  # layer-parallel: per configuration; zstore: option
    return Outcome(lines=[line(name, v) for name, v in rows.items()], wrote=[str(args.out / "report.md")])


def _run_parallel(args: argparse.Namespace, command: str) -> Outcome:
    args.configs = [c.strip() for c in args.configs.split(";")] if args.configs else None
    for c in args.configs or []:
        if c not in PARALLEL_CONFIGS:
            raise ValueError(f"Invalid --configs entry {c!r}; expected some of: {'; '.join(PARALLEL_CONFIGS)}")
    return _run(args, command, bench.run_parallel_benchmark, _PARALLEL_FLAGS, _parallel_line)


def _parallel_line(name: str, v: dict[str, Any]) -> str:
    return f"{name:>52}: {v['median_epoch_s']:.2f} s/epoch, train loss {v['train_loss']:.4f}"


def _zstore_line(name: str, r: dict[str, Any]) -> str:
    return f"{name:>24}: z {r['z_bytes'] / 2**30:.2f} GiB, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"


PARALLEL = Subcommand(
    "layer-parallel",
    "decoupled training: 2 processes (one stage each) against 1, and backprop",
    lambda p: add_flags(p, {**_DEFAULTS, "repeats": 3}, _PARALLEL_FLAGS),
    _run_parallel,
    unsupported=_PARALLEL,
)
ZSTORE = Subcommand(
    "zstore",
    "memory of the decoupled z store (float32/bfloat16, in memory/memory-mapped)",
    lambda p: add_flags(p, {**_DEFAULTS, "steps": 50}, _ZSTORE_FLAGS),
    lambda args, command: _run(
        args, command, bench.run_zstore_benchmark, _ZSTORE_FLAGS, _zstore_line, threads=args.threads or 1
    ),
    unsupported=_ZSTORE,
    threads_help="torch CPU threads of the worker process (default 1)",
)
