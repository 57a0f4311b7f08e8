"""A clear error, before any work starts, when a framework integration's package is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` that names ``what`` needs it and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the {module.split('.')[0]!r} package, which is not installed here. "
            f'Install it with: pip install "layerwise[{extra}]"'
        ) from exc
