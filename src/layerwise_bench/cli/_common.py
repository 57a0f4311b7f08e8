"""The flags every ``layerwise bench`` subcommand shares (``--out``, ``--device``, ``--threads``, ``--seed``,
``--resume``, ``--overwrite``, ``--progress``): each is honoured, or rejected with the reason when given; and the
one way subcommands declare their own flags (:func:`add_flags`) and pass them on."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..core._record import RESULTS_FILE
from ._subcommand import Subcommand

__all__ = [
    "COMMON_FLAGS",
    "Flags",
    "add_common_flags",
    "add_data_args",
    "add_flags",
    "add_method_overrides",
    "check_common_flags",
    "config_from_args",
    "hparam_overrides",
    "names_from",
    "number",
    "numbers",
    "pair",
    "pick",
    "positive_float",
    "positive_int",
    "record_files",
    "run_options",
]

T = TypeVar("T")

COMMON_FLAGS = ("out", "device", "threads", "seed", "resume", "overwrite", "progress")

#: flags by field name: ``(kind, help)`` or ``(kind, help, more add_argument keywords)``; kind an ``argparse`` type,
#: a tuple of choices, ``bool`` (a switch) or None (a string); the help's ``{field}``s are filled from the defaults.
Flags = Mapping[str, tuple[Any, ...]]


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {value}")
    return value


def number(cast: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> Callable[[str], T]:
    """An ``argparse`` type: a value read by ``cast`` for which ``ok`` holds; else the error says ``expected
    {expected}`` and what was found."""

    def parse(text: str) -> T:
        try:
            value: T | None = cast(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
        return value

    return parse


positive_float = number(float, lambda v: v > 0, "a number > 0")


def numbers(cast: Callable[[str], T], ok: Callable[[list[T]], bool], expected: str) -> Callable[[str], list[T]]:
    """An ``argparse`` type: comma-separated values, each read by ``cast``, the list non-empty and ``ok``;
    else the error says ``expected {expected}`` and what was found."""
    return number(
        lambda text: [cast(v) for v in text.split(",") if v.strip()], lambda vs: bool(vs) and ok(vs), expected
    )


def pair(value: Callable[[str], T], ok: Callable[[str, T], bool], expected: str) -> Callable[[str], tuple[str, Any]]:
    """An ``argparse`` type: ``NAME=VALUE``, the value read by ``value`` and ``ok(name, value)``; else the error says
    ``expected {expected}`` and what was found."""

    def read(text: str) -> tuple[str, T | None]:
        name, sep, raw = text.partition("=")
        return name, value(raw) if sep else None

    return number(read, lambda nv: nv[1] is not None and ok(nv[0], nv[1]), expected)


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


def add_flags(p: argparse.ArgumentParser, values: dict[str, Any], *groups: Flags | Callable[[Any], None]) -> None:
    """Add ``--field-name`` for every field of every group in order (see :data:`Flags`), defaulting to its entry in
    ``values`` (a callable group adds its own flags)."""
    for group in groups:
        if callable(group):
            group(p)
            continue
        for name, (kind, text, *more) in group.items():
            how = {"action": "store_true"} if kind is bool else {"choices": kind} if isinstance(kind, tuple) else {}
            p.add_argument(
                "--" + name.replace("_", "-"),
                **(how or ({} if kind is None else {"type": kind})),
                default=values.get(name, False if kind is bool else None),
                help=text and text.format(**values),
                **(more[0] if more else {}),
            )


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
    unknown = set(s.unsupported) - set(COMMON_FLAGS)
    if unknown:
        raise ValueError(f"unknown common flags {sorted(unknown)}")
    flags: dict[str, tuple[Any, ...]] = {
        "out": (Path, "output directory (results.json, report.md, plots)", {"required": s.out_required}),
        "device": (None, "torch device, e.g. cpu, cuda, cuda:1 (default cpu)"),
        "threads": (positive_int, s.threads_help),
        "seed": (int, f"random seed (default {s.seed})"),
        "resume": (None, "continue an interrupted run in --out from its checkpoint", {"action": "store_true"}),
        "overwrite": (None, "replace an existing run in --out", {"action": "store_true"}),
        "progress": (
            None,
            "progress bars (default on; --no-progress for logs)",
            {"action": argparse.BooleanOptionalAction},
        ),
    }
    for flag, why in s.unsupported.items():
        flags[flag] = (flags[flag][0], f"not taken by this benchmark ({why})", *flags[flag][2:])
    add_flags(p, {}, flags)  # every default None: given or not is told apart (resume and overwrite too)
    p.set_defaults(_parser=p, _unsupported=dict(s.unsupported), _seed_default=s.seed)


def check_common_flags(args: argparse.Namespace, name: str) -> None:
    """Reject a shared flag this subcommand cannot honour (exit 2 with the reason), then fill the defaults."""
    for flag, why in getattr(args, "_unsupported", {}).items():
        if getattr(args, flag) is not None:
            args._parser.error(f"`layerwise bench {name}` does not take --{flag}: {why}. Drop --{flag}.")
    args.device = args.device or "cpu"
    args.seed = args._seed_default if args.seed is None else args.seed
    args.resume, args.overwrite = bool(args.resume), bool(args.overwrite)
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


def pick(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The parsed flags ``names``, as keyword arguments of the same names."""
    return {n: getattr(args, n) for n in names}


def run_options(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The keyword arguments every data-reading benchmark run takes, from the parsed flags."""
    return {**pick(args, "data_dir", "download", "device", "overwrite", "progress"), "command": command}


def record_files(out: Path) -> list[str]:
    """What a benchmark writing a record says it wrote: ``results.json`` and ``report.md`` in ``out``."""
    return [str(out / RESULTS_FILE), str(out / "report.md")]


_lr_pair = pair(float, lambda name, lr: not lr <= 0, "METHOD=LR pairs with LR > 0 (e.g. adam=1e-3,sgd=0.01)")


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
    add_flags(
        p,
        {"lr": {}, "set": []},
        {
            "lr": (
                lambda text: dict(map(_lr_pair, filter(None, text.split(",")))),
                "override learning rates: METHOD=LR,...",
            ),
            "set": (
                _setting,
                "replace one of a method's hyper-parameters (repeatable), e.g. --set locoprop-m.steps=5",
                {"action": "append", "metavar": "METHOD.KEY=VALUE"},
            ),
        },
    )


def hparam_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """``--set`` as ``{method: {key: value}}``."""
    out: dict[str, dict[str, object]] = {}
    for name, key, value in args.set:
        out.setdefault(name, {})[key] = value
    return out
