"""Shared plotting helpers of the benchmark reports (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ._io import atomic_write_bytes

__all__ = ["figure", "save_png"]


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
