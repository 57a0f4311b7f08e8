"""Hyper-parameter sweep: pick each method's lr (and optional grid values) by final training loss on a short run."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ._harness import AutoencoderConfig, AutoencoderData, TrainingDiverged, train_method
from ._io import atomic_write_json, read_json
from ._method import Method
from ._registry import get_method

__all__ = ["tune_learning_rates"]


def tune_learning_rates(
    method_names: list[str],
    cfg: AutoencoderConfig,
    data: AutoencoderData,
    out_file: str | Path,
    *,
    points: int = 5,
    max_extensions: int = 4,
    progress: bool = True,
    command: str = "",
    grid: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """Sweep lr on a half-decade grid centred on each method's default; keep the lowest final loss.

    The grid is ``default · 10^(k/2)`` for ``k`` in ``-(points//2) .. points//2``; when the best lr
    is at an edge the grid is extended in that direction (at most ``max_extensions`` times). A
    diverging lr scores ``inf``. ``grid`` (e.g. ``{"damping": [10, 100]}``) adds other
    hyper-parameters: the lr sweep runs for every combination and the best pair wins; the winning
    values are stored as ``tuned_hparams`` and used by the benchmark. The result, with every sweep point, is
    merged into ``out_file`` (other methods' entries are kept, so methods can be swept in separate processes).
    """
    if points < 3:
        raise ValueError(f"Invalid points={points}. Must be >= 3 so that the best value can be interior.")
    methods = [get_method(n) for n in method_names]
    out_file = Path(out_file)
    result: dict[str, Any] = {"methods": {}}
    grid = dict(grid or {})
    for m in methods:
        unknown = sorted(set(grid) - set(m.hparams))
        if unknown:
            raise ValueError(
                f"--grid names {unknown}, which method {m.name!r} does not take; its hyper-parameters "
                f"are {sorted(m.hparams)}."
            )
        best: tuple[float, float, dict[str, Any]] = (math.inf, m.default_lr, {})
        table: dict[str, float] = {}
        for values in itertools.product(*grid.values()):
            combo = {k: type(m.hparams[k])(v) for k, v in zip(grid, values, strict=True)}
            sweep = _sweep(replace(m, hparams={**m.hparams, **combo}), cfg, data, points, max_extensions, progress)
            prefix = "".join(f"{k}={v:g} " for k, v in combo.items())
            table.update({f"{prefix}lr={lr:.3g}" if combo else f"{lr:.3g}": loss for lr, loss in sorted(sweep.items())})
            lr = min(sweep, key=lambda lr: sweep[lr])
            if sweep[lr] < best[0]:
                best = (sweep[lr], lr, combo)
        result["methods"][m.name] = {
            "lr": best[1],
            "hparams": {**m.hparams, **best[2]},
            "config": asdict(cfg),
            "command": command,
            "sweep": table,
        }
        if grid:
            result["methods"][m.name]["tuned_hparams"] = best[2]
        merged = read_json(out_file) if out_file.is_file() else {}  # re-read: others may have written
        merged.update(benchmark="autoencoder", criterion="final full training-set loss of a short run")
        merged.setdefault("methods", {})[m.name] = result["methods"][m.name]
        atomic_write_json(merged, out_file)
    return result


def _sweep(
    m: Method, cfg: AutoencoderConfig, data: AutoencoderData, points: int, max_extensions: int, progress: bool
) -> dict[float, float]:
    """Final training loss for each lr tried (``inf`` where the run diverged)."""
    sweep: dict[float, float] = {}

    def score(k: int) -> float:
        lr = float(f"{m.default_lr * 10 ** (k / 2):.3g}")
        if lr not in sweep:
            try:
                sweep[lr] = train_method(m, lr, data, cfg, progress=progress)[-1]["train_loss"]
            except TrainingDiverged:
                sweep[lr] = math.inf
        return sweep[lr]

    ks = list(range(-(points // 2), points // 2 + 1))
    for _ in range(max_extensions + 1):
        scores = {k: score(k) for k in ks}
        best = min(ks, key=lambda k: scores[k])
        if best == ks[0]:
            ks.insert(0, ks[0] - 1)
        elif best == ks[-1]:
            ks.append(ks[-1] + 1)
        else:
            break
    return sweep
