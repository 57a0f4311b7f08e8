"""The ``layerwise`` command: ``layerwise bench NAME`` for every registered subcommand, and ``layerwise report``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import layerwise
import layerwise_bench as bench
from layerwise.data import DataError

from ..core._record import command_line
from ._autoencoder import AUTOENCODER, EQUAL_TIME, TUNE
from ._common import add_common_flags, check_common_flags
from ._deep_mlp import AUX, DEPTH, SIMILARITY
from ._exits import EXITS
from ._parallel import PARALLEL, ZSTORE
from ._subcommand import Outcome, Subcommand
from ._timing import DIAGNOSE, STEPTIME, TELEMETRY

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: every ``layerwise bench`` subcommand, in ``--help`` order.
SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in (
        AUTOENCODER,
        TUNE,
        EQUAL_TIME,
        STEPTIME,
        DIAGNOSE,
        TELEMETRY,
        AUX,
        EXITS,
        DEPTH,
        SIMILARITY,
        PARALLEL,
        ZSTORE,
    )
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``layerwise`` command."""
    parser = argparse.ArgumentParser(
        prog="layerwise", description="Training with layer-wise losses: benchmarks and reports."
    )
    parser.add_argument("--version", action="version", version=f"layerwise {layerwise.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="run a benchmark").add_subparsers(dest="benchmark", required=True)
    for s in SUBCOMMANDS.values():
        p = b.add_parser(s.name, help=s.help)
        add_common_flags(p, s)
        s.add_arguments(p)
    rp = sub.add_parser("report", help="rebuild report and plots from saved results (several runs: mean and spread)")
    rp.add_argument("dirs", nargs="+", type=Path, help="run directories holding results.json")
    rp.add_argument("--out", type=Path, default=None, help="where to write (default: the first directory)")
    rp.add_argument(
        "--allow-mixed-machines",
        action="store_true",
        help="let several equal-time records measured on different machines share one table of times (each is "
        "marked with its machine); refused without this flag",
    )
    return parser


def _run(args: argparse.Namespace, command: str) -> Outcome:
    if args.command == "report":
        path = bench.rebuild_report(args.dirs, args.out, allow_mixed_machines=args.allow_mixed_machines)
        return Outcome(wrote=[str(path)])
    return SUBCOMMANDS[args.benchmark].run(args, command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (errors print one clear line and return 1)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        check_common_flags(args, args.benchmark)
    command = command_line(argv)  # absolute paths under the working directory written relative to it
    try:
        outcome = _run(args, command)
    except KeyboardInterrupt:
        print("interrupted: the checkpoint of the last complete epoch is kept; continue with --resume", file=sys.stderr)
        return 130
    except (bench.TrainingDiverged, DataError, ValueError, OSError, ImportError) as exc:
        print(f"layerwise: error: {exc}", file=sys.stderr)
        return 1
    for line in outcome.lines:
        print(line)
    if outcome.wrote:
        print("wrote " + " and ".join(outcome.wrote))
    for message in outcome.errors:
        print(f"layerwise: error: {message}", file=sys.stderr)
    return outcome.status
