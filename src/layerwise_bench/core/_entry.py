"""A method of a benchmark: a named entry with a one-line summary and the factory that makes it (chosen with
``--methods``, described in reports by its summary)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Entry", "table"]

F = TypeVar("F", bound=Callable[..., object])
E = TypeVar("E", bound="Entry")


@dataclass(frozen=True)
class Entry(Generic[F]):
    """``name`` (the ``--methods`` key), ``summary`` (one line for reports and ``--help``; ``{field}``
    placeholders are filled from the benchmark's config), ``make`` (the factory)."""

    name: str
    summary: str
    make: F

    def describe(self, **config: object) -> str:
        """The summary with its ``{field}`` placeholders filled from ``config``."""
        return self.summary.format(**config)


def table(*entries: E) -> dict[str, E]:
    """The entries keyed by name, in the given order; a repeated name is an error."""
    out: dict[str, E] = {}
    for e in entries:
        if e.name in out:
            raise ValueError(f"two entries are named {e.name!r}; method names must be unique")
        out[e.name] = e
    return out
