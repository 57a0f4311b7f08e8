"""Checksum-verified, atomic download of the MNIST files from the standard mirrors."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ._errors import DataError
from ._mnist_files import MNIST_FILES, verify_file

__all__ = ["MNIST_MIRRORS", "download_mnist"]

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def _fetch(url: str, target: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out)


def download_mnist(folder: str | Path, mirrors: Sequence[str] = MNIST_MIRRORS, timeout: float = 60.0) -> list[Path]:
    """Fetch every MNIST file missing or invalid in ``folder``; return the paths it wrote.

    Each file is written to a temporary name in the same folder, verified (MD5 of the uncompressed
    content, shape), and only then renamed into place, so an interrupted download never leaves a
    file that looks complete. Mirrors are tried in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in MNIST_FILES.values():
        final = folder / f"{spec.name}.gz"
        if final.is_file():
            try:
                verify_file(final, spec)
                continue
            except DataError:
                pass  # replaced below
        errors = []
        for mirror in mirrors:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                _fetch(mirror + final.name, tmp, timeout)
                verify_file(tmp, spec)
                os.replace(tmp, final)
                written.append(final)
                break
            except (OSError, urllib.error.URLError, DataError) as exc:
                errors.append(f"{mirror}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise DataError(
                f"could not download {final.name!r} into {str(folder)!r}; tried "
                + "; ".join(errors)
                + ". Check your internet connection, or copy the "
                "file there by hand."
            )
    return written
