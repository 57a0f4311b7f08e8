"""Atomic writes: a file is either the old complete version or the new complete version. Checkpoints and the
JSON objects the application writes (records, tuned values) carry a SHA-256 digest of their contents,
verified on load; a damaged JSON or checkpoint is an error naming the file."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CorruptFile",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_checkpoint",
    "read_json",
]

_MAGIC = b"layerwise-checkpoint sha256 "
DIGEST_KEY = "sha256"
_WRITER = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # this host, in temporaries' names


class CorruptFile(ValueError):
    """A file the project wrote does not read back as written (truncated, bit-flipped, not ours)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(
            exc.errno,
            f"could not write {str(path)!r} ({exc.strerror or exc}); its previous version, if any, is intact. "
            "Free some space (or fix the permissions) and continue with --resume, or choose another --out",
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_orphans(path: Path) -> None:
    """Delete temporaries of ``path`` left by killed writers of this host (their process no longer exists); a
    live writer's temporary, or one from another host sharing the folder, is left alone."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{_WRITER}-*.tmp"):
        pid = tmp.name[len(path.name) + len(_WRITER) + 3 :].split(".")[0]
        if not (pid.isascii() and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OverflowError, ValueError):  # alive (another user's), or not a PID
            pass


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` made atomic (see :func:`atomic_write_bytes`), with a header holding the SHA-256 digest
    of the payload, which :func:`load_checkpoint` verifies."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    atomic_write_bytes(path, _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path: str | Path, map_location: Any = None) -> Any:
    """Read a checkpoint written by :func:`atomic_torch_save`, verifying its digest (CorruptFile if it differs)."""
    import io

    path = Path(path)
    data = path.read_bytes()
    fix = (
        "Delete it to start that run from scratch (the other runs of the record are kept), or restore it from a backup."
    )
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 65:
        raise CorruptFile(f"checkpoint {str(path)!r} is not a layerwise checkpoint or is truncated. {fix}")
    digest, payload = data[len(_MAGIC) : len(_MAGIC) + 64], data[len(_MAGIC) + 65 :]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CorruptFile(
            f"checkpoint {str(path)!r} does not match its SHA-256 digest: it was damaged after it was written "
            f"(truncated or a flipped bit). Resuming from it would silently change the numbers. {fix}"
        )
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)


def _content_digest(obj: Any) -> str:
    """SHA-256 of ``obj``'s canonical JSON (sorted keys, no spaces): independent of layout and key order."""

    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented JSON, atomically; a dict gets a last key ``"sha256"``, the digest of the rest,
    which :func:`read_json` verifies (a flipped digit keeps JSON valid but changes a number)."""
    if isinstance(obj, dict):
        # hash what a reader will parse (JSON turns int keys into strings, which sort differently)
        rest = json.loads(json.dumps({k: v for k, v in obj.items() if k != DIGEST_KEY}, allow_nan=True))
        obj = {**rest, DIGEST_KEY: _content_digest(rest)}
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a damaged one is a :class:`CorruptFile` naming it. A dict's ``"sha256"`` key, when
    present, is verified and removed (files written by hand, without one, are read as they are)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFile(
            f"{str(path)!r} is not valid JSON ({exc}); it was damaged after it was written. Restore it from a "
            "backup or version control, or start over with --overwrite (which replaces it)."
        ) from None
    if isinstance(data, dict) and DIGEST_KEY in data:
        stored = data.pop(DIGEST_KEY)
        if stored != _content_digest(data):
            raise CorruptFile(
                f"{str(path)!r} does not match the SHA-256 digest it was written with: it was changed afterwards "
                f"(a flipped bit, or an edit by hand). If you edited it on purpose, delete its {DIGEST_KEY!r} "
                "entry; otherwise restore it from a backup or version control, or start over with --overwrite."
            )
    return data
