"""Shared plotting helpers of the benchmark reports (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ._io import atomic_write_bytes

__all__ = ["distinct_colors", "figure", "method_colors", "palette", "save_png"]


@cache
def palette() -> tuple[str, ...]:
    """60 distinct colours, the most visible on white first: tab10; tab20b's two darker shades of its five
    hues; tab20's light shades; then the rest of tab20b and tab20c."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    tab20, tab20b, tab20c = ([to_hex(colormaps[n](i)) for i in range(20)] for n in ("tab20", "tab20b", "tab20c"))
    ordered = [*tab20[0::2], *tab20b[0::4], *tab20b[1::4], *tab20[1::2], *tab20b, *tab20c]
    return tuple(dict.fromkeys(ordered))


def distinct_colors(names: Iterable[str], preferred: dict[str, str] | None = None) -> dict[str, str]:
    """One colour per name, no two alike while the palette lasts: a name keeps its ``preferred`` colour unless an
    earlier name took it; the others get the first palette colours not yet used, in order."""
    order, wish = list(dict.fromkeys(names)), preferred or {}
    out: dict[str, str] = {}
    for name in order:
        if name in wish and wish[name] not in out.values():
            out[name] = wish[name]
    taken = set(out.values())
    free = (c for c in palette() if c not in taken)
    for i, name in enumerate(order):
        if name not in out:
            out[name] = next(free, palette()[i % len(palette())])  # past 60 names in one plot: reused
    return {name: out[name] for name in order}


def method_colors(names: Iterable[str], registry: Sequence[str] | None = None) -> dict[str, str]:
    """Colours of benchmark methods: the ``i``-th registered method (``registry``, default the registry of
    ``layerwise_bench.METHODS`` in registration order) gets palette colour ``i`` in every plot, so no two
    registered methods share one; names outside the registry get colours no other name in the plot has."""
    if registry is None:
        from ._registry import METHODS

        registry = list(METHODS)
    colours = palette()
    preferred = {name: colours[i] for i, name in enumerate(registry) if i < len(colours)}
    return distinct_colors(names, preferred)


def figure(panels: int, width: float = 6.0) -> tuple[Any, Any]:
    """A figure with ``panels`` side-by-side axes (returned as a 1-D array)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 4.2), squeeze=False)
    return fig, axes[0]


def save_png(fig: Any, path: Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
