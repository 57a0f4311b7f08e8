"""Where data lives: command-line flag, then environment variable, then a user cache directory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_DATA_DIR", "resolve_data_dir", "default_cache_dir"]

ENV_DATA_DIR = "LAYERWISE_DATA_DIR"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/layerwise`` or ``~/.cache/layerwise``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layerwise"


def resolve_data_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """Return the data directory: ``flag`` if given, else ``$LAYERWISE_DATA_DIR``, else the cache.

    Data sets live in sub-folders of it (``<dir>/mnist/``).
    """
    if flag is not None and str(flag) != "":
        return Path(flag).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()
