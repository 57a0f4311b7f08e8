"""Backward passes that measure rather than train, and the parameters whose optimizer watches backward passes.

LocoProp and K-FAC (the standard contract) keep what each backward pass through their layers carries. The
per-term partial backward passes of :class:`~layerwise.terms.TermGradients` (telemetry, GradNorm) are
measurements, not the step's gradient: inside :func:`measuring` those hooks file nothing. :func:`watched`
tells ``layerwise.backward`` that such an optimizer needs the update to be one real backward pass.

A counter, not a thread-local: on a GPU the autograd engine runs tensor hooks on its own threads.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import Tensor

__all__ = ["is_measuring", "measuring", "watch", "watched"]

_DEPTH = 0
# id(parameter) -> (the parameter, the optimizer-side object that watches it), both weak
_WATCHED: dict[int, tuple[weakref.ref[Tensor], weakref.ref[object]]] = {}


@contextmanager
def measuring() -> Iterator[None]:
    """Backward passes inside are measurements: capture hooks of LocoProp and K-FAC file nothing."""
    global _DEPTH
    _DEPTH += 1
    try:
        yield
    finally:
        _DEPTH -= 1


def is_measuring() -> bool:
    return _DEPTH > 0


def watch(params: Iterable[Tensor], owner: object) -> None:
    """``owner`` (alive) reads the backward passes through ``params``' layers."""
    for key in [k for k, (p, o) in _WATCHED.items() if p() is None or o() is None]:  # freed models, optimizers
        del _WATCHED[key]
    ref = weakref.ref(owner)
    for p in params:
        _WATCHED[id(p)] = (weakref.ref(p), ref)


def watched(params: Iterable[Tensor]) -> bool:
    """Whether a live optimizer reads the backward passes through any of ``params``."""
    for p in params:
        entry = _WATCHED.get(id(p))
        if entry is not None and entry[0]() is p and entry[1]() is not None:
            return True
    return False
