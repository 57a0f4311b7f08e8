"""Errors of the data layer."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file or directory is missing, unreadable, corrupted or of the wrong shape.

    The message names the file, what was expected, what was found and how to fix it.
    """
