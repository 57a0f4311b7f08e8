"""Hyper-parameter sweep: pick each method's lr (and optional grid values) by the final training loss reached
on the budget it is given (run it on the budget you report: a shorter run favours the rate that leaves the
initial plateau fastest, not the one that ends best)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core._harness import AutoencoderConfig, TrainingDiverged, train_method
from ..core._io import atomic_write_json, read_json
from ..core._method import Method
from ..core._tuned import registry_methods

__all__ = ["tune_learning_rates"]


def tune_learning_rates(
    method_names: list[str],
    cfg: AutoencoderConfig,
    data: Any,
    out_file: str | Path,
    *,
    points: int = 5,
    max_extensions: int = 4,
    progress: bool = True,
    command: str = "",
    grid: dict[str, list[Any]] | None = None,
    close: float = 0.01,
    seeds: int = 3,
    centres: dict[str, float] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Sweep each method's lr on the grid ``centre · 10^(k/2)``, ``|k| <= points // 2``, extended past an edge
    holding the best (at most ``max_extensions`` times), for every ``grid`` combination; the lowest final loss wins,
    close calls decided by the mean over ``seeds`` seeds. Merged into ``out_file``; ``resume`` reuses saved runs."""
    if points < 3:
        raise ValueError(f"Invalid points={points}. Must be >= 3 so that the best value can be interior.")
    if not 0 <= close < 1 or seeds < 1:
        raise ValueError(f"Invalid close={close} or seeds={seeds}: expected 0 <= close < 1 and seeds >= 1.")
    methods = registry_methods(method_names, cfg.task)
    out_file = Path(out_file)
    run = _Runs(out_file, data, progress, resume)
    result: dict[str, Any] = {"methods": {}}
    grid = dict(grid or {})
    for m in methods:
        unknown = sorted(set(grid) - set(m.hparams))
        if unknown:
            raise ValueError(
                f"--grid names {unknown}, which method {m.name!r} does not take; its hyper-parameters "
                f"are {sorted(m.hparams)}."
            )
        scores: dict[str, tuple[float, float, dict[str, Any]]] = {}  # key -> (loss, lr, combo)
        for values in itertools.product(*grid.values()):
            combo = {k: type(m.hparams[k])(v) for k, v in zip(grid, values, strict=True)}
            centre = (centres or {}).get(m.name, cfg.task.default_lrs.get(m.name, m.default_lr))
            variant = replace(m, hparams={**m.hparams, **combo}, default_lr=centre)
            sweep = _sweep(variant, cfg, run, points, max_extensions)
            prefix = "".join(f"{k}={v:g} " for k, v in combo.items())
            for lr, loss in sorted(sweep.items()):
                scores[f"{prefix}lr={lr:.3g}" if combo else f"{lr:.3g}"] = (loss, lr, combo)
        per_seed = _break_close_calls(m, cfg, run, scores, close, seeds)
        key = min(scores, key=lambda k: scores[k][0])
        result["methods"][m.name] = {
            "lr": scores[key][1],
            "hparams": {**m.hparams, **scores[key][2]},
            "config": cfg.as_dict(),
            "command": command,
            "sweep": {k: v[0] for k, v in scores.items()},
            "seeds": per_seed,
        }
        best = (scores[key][0], scores[key][1], scores[key][2])
        if grid:
            result["methods"][m.name]["tuned_hparams"] = best[2]
        merged = read_json(out_file) if out_file.is_file() else {}  # re-read: others may have written
        merged.update(
            benchmark=cfg.workload,
            criterion="final full training-set loss on the run's budget (see each method's config)",
            protocol=(
                f"lr on a half-decade grid of {points} points around the method's centre, extended at an "
                f"edge (at most {max_extensions} times); a diverged run scores inf; configurations within "
                f"{close:.0%} of the best re-run with {seeds} seeds in all and ranked by the mean"
            ),
        )
        merged.setdefault("methods", {})[m.name] = result["methods"][m.name]
        atomic_write_json(merged, out_file)
    return result


class _Runs:
    """Final training loss of one (method, lr, config) run, saved to ``out_file["points"]`` when it ends and,
    with ``resume``, read back instead of run again."""

    def __init__(self, out_file: Path, data: Any, progress: bool, resume: bool) -> None:
        self.out_file, self.data, self.progress, self.resume = out_file, data, progress, resume

    def __call__(self, m: Method, lr: float, cfg: AutoencoderConfig) -> float:
        key = json.dumps([m.name, m.hparams, lr, cfg.as_dict()], sort_keys=True, default=str)
        saved = read_json(self.out_file) if self.out_file.is_file() else {}
        if self.resume and key in saved.get("points", {}):
            return float(saved["points"][key])
        try:
            loss = train_method(m, lr, self.data, cfg, progress=self.progress)[-1]["train_loss"]
        except TrainingDiverged:
            loss = math.inf
        saved = read_json(self.out_file) if self.out_file.is_file() else {}  # re-read: others may have written
        saved.setdefault("points", {})[key] = loss
        atomic_write_json(saved, self.out_file)
        return float(loss)


def _break_close_calls(
    m: Method,
    cfg: AutoencoderConfig,
    run: _Runs,
    scores: dict[str, tuple[float, float, dict[str, Any]]],
    close: float,
    seeds: int,
) -> dict[str, list[float]]:
    """Re-run the configurations within ``close`` of the best with more seeds; their scores become seed means
    (updated in place). Returns the per-seed losses of the re-run ones."""
    best = min(v[0] for v in scores.values())
    contenders = [k for k, v in scores.items() if math.isfinite(v[0]) and v[0] <= best * (1 + close)]
    per_seed: dict[str, list[float]] = {}
    if len(contenders) < 2 or seeds < 2:
        return per_seed
    for key in contenders:
        loss, lr, combo = scores[key]
        variant = replace(m, hparams={**m.hparams, **combo})
        losses = [loss, *(run(variant, lr, replace(cfg, seed=cfg.seed + s)) for s in range(1, seeds))]
        per_seed[key] = losses
        scores[key] = (sum(losses) / len(losses), lr, combo)
    return per_seed


def _sweep(m: Method, cfg: AutoencoderConfig, run: _Runs, points: int, max_extensions: int) -> dict[float, float]:
    """Final training loss for each lr tried (``inf`` where the run diverged)."""
    sweep: dict[float, float] = {}

    def score(k: int) -> float:
        lr = float(f"{m.default_lr * 10 ** (k / 2):.3g}")
        if lr not in sweep:
            sweep[lr] = run(m, lr, cfg)
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
