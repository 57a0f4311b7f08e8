"""Where snapshots go: CSV (long format), JSON Lines, TensorBoard.

Each write is flushed, so a crashed run keeps its lines.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._snapshot import Snapshot

__all__ = ["CSVSink", "JSONLSink", "LogSink", "Sink", "TensorBoardSink"]


@runtime_checkable
class Sink(Protocol):
    """Anything with ``write(snapshot)`` and ``close()``."""

    def write(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


def _open(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class CSVSink:
    """Long-format CSV, one row per (step, set, term) and one per (step, set, pair of terms).

    Columns ``step,set,term,other,loss,weight,norm,contribution,cosine,inner``. Rows with an empty
    ``other`` describe term ``term`` on set ``set``: its loss, weight (empty when none was given),
    gradient norm and contribution. Rows with ``other`` set describe the pair (``term``, ``other``),
    ``term`` before ``other`` in term order: their cosine and inner product ⟨g_term, g_other⟩ (the
    Gramian entry). With pandas: ``df[df.other.isna()]`` are the per-term rows. The file is replaced.
    """

    COLUMNS = ("step", "set", "term", "other", "loss", "weight", "norm", "contribution", "cosine", "inner")

    def __init__(self, path: str | Path) -> None:
        self.path = _open(path)
        self._file = self.path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.COLUMNS)
        self._file.flush()

    def __repr__(self) -> str:
        return f"CSVSink({str(self.path)!r})"

    def write(self, snapshot: Snapshot) -> None:
        terms = snapshot.terms
        w = snapshot.weights
        for s in snapshot.sets:
            for t in terms:
                self._writer.writerow(
                    (
                        snapshot.step,
                        s,
                        t,
                        "",
                        snapshot.losses[t],
                        "" if w is None else w[t],
                        snapshot.norms[s][t],
                        snapshot.contributions[s][t],
                        "",
                        "",
                    )
                )
            for i, a in enumerate(terms):
                for j in range(i + 1, len(terms)):
                    self._writer.writerow(
                        (
                            snapshot.step,
                            s,
                            a,
                            terms[j],
                            "",
                            "",
                            "",
                            "",
                            snapshot.cosines[s][i][j],
                            snapshot.gramian[s][i][j],
                        )
                    )
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class JSONLSink:
    """JSON Lines: one ``snapshot.to_dict()`` per line (read back with ``Snapshot.from_dict``). The file is replaced."""

    def __init__(self, path: str | Path) -> None:
        self.path = _open(path)
        self._file = self.path.open("w")

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, snapshot: Snapshot) -> None:
        self._file.write(json.dumps(snapshot.to_dict()) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    """TensorBoard scalars at ``global_step = snapshot.step`` (extra ``layerwise[tensorboard]``).

    Tags: those of :meth:`Snapshot.scalars`.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorBoardSink needs the tensorboard package: pip install 'layerwise[tensorboard]'"
            ) from exc
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __repr__(self) -> str:
        return f"TensorBoardSink({str(self.log_dir)!r})"

    def write(self, snapshot: Snapshot) -> None:
        for tag, value in snapshot.scalars().items():
            self.writer.add_scalar(tag, value, snapshot.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class LogSink:
    """Hand each snapshot's scalars to a logging function: ``log({prefix + tag: value}, step=snapshot.step)``.

    The tags are those of :meth:`Snapshot.scalars`. Fits ``accelerator.log`` (Accelerate's trackers),
    ``wandb.log``, or any ``log(values, step=...)``; e.g. ``GradientTelemetry(sets, sinks=[LogSink(accelerator.log)])``.
    """

    def __init__(self, log: Callable[..., Any], *, prefix: str = "telemetry/") -> None:
        if not callable(log):
            raise TypeError(f"LogSink: expected a function log(values, step=...), got {type(log).__name__}.")
        self.log, self.prefix = log, prefix

    def __repr__(self) -> str:
        return f"LogSink({self.log!r}, prefix={self.prefix!r})"

    def write(self, snapshot: Snapshot) -> None:
        self.log({self.prefix + tag: value for tag, value in snapshot.scalars().items()}, step=snapshot.step)

    def close(self) -> None:
        """Nothing to close: the logging function's owner (the tracker) closes it."""
