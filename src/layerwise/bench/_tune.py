"""Learning-rate sweep: pick each method's lr by final training loss on a short run."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._harness import AutoencoderConfig, AutoencoderData, TrainingDiverged, train_method
from ._io import atomic_write_json, read_json
from ._method import Method
from ._registry import get_method

__all__ = ["tune_learning_rates"]


def tune_learning_rates(method_names: list[str], cfg: AutoencoderConfig, data: AutoencoderData,
                        out_file: str | Path, *, points: int = 5, max_extensions: int = 4,
                        progress: bool = True, command: str = "") -> dict[str, Any]:
    """Sweep lr on a half-decade grid centred on each method's default; keep the lowest final loss.

    The grid is ``default · 10^(k/2)`` for ``k`` in ``-(points//2) .. points//2``; when the best lr
    is at an edge the grid is extended in that direction (at most ``max_extensions`` times). A
    diverging lr scores ``inf``. The result, with every sweep point, is merged into ``out_file`` (other methods' entries
    are kept, so methods can be swept in separate processes).
    """
    if points < 3:
        raise ValueError(f"Invalid points={points}. Must be >= 3 so that the best value can be interior.")
    methods = [get_method(n) for n in method_names]
    out_file = Path(out_file)
    result: dict[str, Any] = {"methods": {}}
    for m in methods:
        sweep = _sweep(m, cfg, data, points, max_extensions, progress)
        best_lr = min(sweep, key=lambda lr: sweep[lr])
        result["methods"][m.name] = {"lr": best_lr, "hparams": m.hparams, "config": asdict(cfg),
                                     "command": command,
                                     "sweep": {f"{lr:.3g}": loss for lr, loss in sorted(sweep.items())}}
        merged = read_json(out_file) if out_file.is_file() else {}  # re-read: others may have written
        merged.update(benchmark="autoencoder", criterion="final full training-set loss of a short run")
        merged.setdefault("methods", {})[m.name] = result["methods"][m.name]
        atomic_write_json(merged, out_file)
    return result


def _sweep(m: Method, cfg: AutoencoderConfig, data: AutoencoderData, points: int, max_extensions: int,
           progress: bool) -> dict[float, float]:
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
