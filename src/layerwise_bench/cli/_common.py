"""The flags every ``layerwise bench`` subcommand shares (``--out``, ``--device``, ``--threads``, ``--seed``,
``--resume``, ``--overwrite``, ``--progress``): each is honoured, or rejected with the reason when given."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..core._record import RESULTS_FILE
from ._subcommand import Subcommand

__all__ = [
    "COMMON_FLAGS",
    "add_common_flags",
    "add_data_args",
    "add_method_overrides",
    "check_common_flags",
    "config_from_args",
    "hparam_overrides",
    "names_from",
    "numbers",
    "positive_float",
    "positive_int",
    "record_files",
    "run_options",
]

T = TypeVar("T")

COMMON_FLAGS = ("out", "device", "threads", "seed", "resume", "overwrite", "progress")


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {value}")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, found {text!r}")
    return value


def numbers(cast: Callable[[str], T], ok: Callable[[list[T]], bool], expected: str) -> Callable[[str], list[T]]:
    """An ``argparse`` type: comma-separated values, each read by ``cast``, the list non-empty and ``ok``;
    else the error says ``expected {expected}`` and what was found."""

    def parse(text: str) -> list[T]:
        try:
            values = [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or not ok(values):
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
        return values

    return parse


def names_from(allowed: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """An ``argparse`` type: a comma-separated, non-empty list of names out of ``allowed`` (read when parsing,
    so that methods registered later count)."""

    def parse(text: str) -> list[str]:
        valid = list(allowed)
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in valid]
        if not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what} names, found {text!r}")
        if bad:
            unknown = ", ".join(repr(n) for n in bad)
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; expected some of: {', '.join(valid)}")
        return names

    return parse


def add_data_args(p: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--download``, for a benchmark that reads MNIST (``run_options`` passes them on)."""
    p.add_argument(
        "--data-dir",
        default=None,
        help="data directory (MNIST in DIR/mnist); else $LAYERWISE_DATA_DIR, else ~/.cache/layerwise",
    )
    p.add_argument("--download", action="store_true", help="fetch missing MNIST files (checksum-verified)")


def add_common_flags(p: argparse.ArgumentParser, s: Subcommand) -> None:
    """Add the shared flags to ``s``'s parser ``p``; a flag in ``s.unsupported`` is an error when given (see
    :func:`check_common_flags`)."""
    unsupported, seed = s.unsupported, s.seed
    unknown = set(unsupported) - set(COMMON_FLAGS)
    if unknown:
        raise ValueError(f"unknown common flags {sorted(unknown)}")

    def hlp(flag: str, text: str) -> str:
        return f"not taken by this benchmark ({unsupported[flag]})" if flag in unsupported else text

    p.add_argument(
        "--out",
        required=s.out_required,
        type=Path,
        default=None,
        help=hlp("out", "output directory (results.json, report.md, plots)"),
    )
    p.add_argument("--device", default=None, help=hlp("device", "torch device, e.g. cpu, cuda, cuda:1 (default cpu)"))
    p.add_argument("--threads", type=positive_int, default=None, help=hlp("threads", s.threads_help))
    p.add_argument("--seed", type=int, default=None, help=hlp("seed", f"random seed (default {seed})"))
    p.add_argument(
        "--resume", action="store_true", help=hlp("resume", "continue an interrupted run in --out from its checkpoint")
    )
    p.add_argument("--overwrite", action="store_true", help=hlp("overwrite", "replace an existing run in --out"))
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=hlp("progress", "progress bars (default on; --no-progress for logs)"),
    )
    p.set_defaults(_parser=p, _unsupported=dict(unsupported), _seed_default=seed)


def check_common_flags(args: argparse.Namespace, name: str) -> None:
    """Reject a shared flag this subcommand cannot honour (exit 2 with the reason), then fill the defaults."""
    given = {
        "out": args.out is not None,
        "device": args.device is not None,
        "threads": args.threads is not None,
        "seed": args.seed is not None,
        "resume": bool(args.resume),
        "overwrite": bool(args.overwrite),
        "progress": args.progress is not None,
    }
    for flag, why in getattr(args, "_unsupported", {}).items():
        if given.get(flag):
            args._parser.error(f"`layerwise bench {name}` does not take --{flag}: {why}. Drop --{flag}.")
    args.device = args.device or "cpu"
    args.seed = args._seed_default if args.seed is None else args.seed
    args.progress = True if args.progress is None else args.progress
    args.no_progress = not args.progress
    if args.threads and "threads" not in args._unsupported:
        torch.set_num_threads(args.threads)


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """A benchmark's config dataclass from the parsed flags of the same names (``--batch-size`` fills
    ``batch_size``); fields without a flag keep their defaults, ``overrides`` win."""
    assert dataclasses.is_dataclass(cls)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def run_options(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The keyword arguments every data-reading benchmark run takes, from the parsed flags."""
    return {
        "data_dir": args.data_dir,
        "download": args.download,
        "device": args.device,
        "overwrite": args.overwrite,
        "progress": args.progress,
        "command": command,
    }


def record_files(out: Path) -> list[str]:
    """What a benchmark writing a record says it wrote: ``results.json`` and ``report.md`` in ``out``."""
    return [str(out / RESULTS_FILE), str(out / "report.md")]


def _lr_pairs(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        try:
            lr = float(value)
        except ValueError:
            lr = -1.0
        if not sep or lr <= 0:
            raise argparse.ArgumentTypeError(
                f"expected METHOD=LR pairs with LR > 0 (e.g. adam=1e-3,sgd=0.01), found {item!r}"
            )
        out[name] = lr
    return out


def _setting(text: str) -> tuple[str, str, object]:
    target, sep, raw = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not sep or not dot or not name or not key:
        raise argparse.ArgumentTypeError(f"expected METHOD.KEY=VALUE (e.g. locoprop-m.steps=5), found {text!r}")
    value: object = raw
    for parse in (int, float):
        try:
            value = parse(raw)
            break
        except ValueError:
            continue
    return name, key, value


def add_method_overrides(p: argparse.ArgumentParser) -> None:
    """``--lr METHOD=LR,...`` and ``--set METHOD.KEY=VALUE`` (repeatable): a run's rates and hyper-parameters."""
    p.add_argument("--lr", type=_lr_pairs, default={}, help="override learning rates: METHOD=LR,...")
    p.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="replace one of a method's hyper-parameters (repeatable), e.g. --set locoprop-m.steps=5",
    )


def hparam_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """``--set`` as ``{method: {key: value}}``."""
    out: dict[str, dict[str, object]] = {}
    for name, key, value in args.set:
        out.setdefault(name, {})[key] = value
    return out
