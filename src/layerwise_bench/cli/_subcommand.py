"""One ``layerwise bench`` subcommand: its name, its own arguments, the common flags it cannot honour, and
its run. ``build_parser`` registers every :data:`SUBCOMMANDS` entry the same way and ``main`` runs it the
same way: the run returns an :class:`Outcome` (lines to print, exit status) and raises on bad input."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Outcome", "Subcommand"]


@dataclass(frozen=True)
class Outcome:
    """What a run says on stdout, what it wrote, and its exit status."""

    lines: list[str] = field(default_factory=list)
    wrote: list[str] = field(default_factory=list)
    status: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Subcommand:
    """A ``layerwise bench NAME`` subcommand: ``add_arguments(parser)`` adds its own arguments, ``run(args, command)``
    returns an :class:`Outcome`; ``unsupported`` maps a common flag to why it is refused; ``seed``, ``threads_help`` and
    ``out_required`` shape the common flags."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, str], Outcome]
    unsupported: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    threads_help: str = "torch CPU threads (default: torch's)"
    out_required: bool = True
