"""``layerwise bench aux``: weightings of deep-supervision losses on a deep plain tanh MLP, several seeds.

Built on the public API only: :class:`~layerwise.taps.Taps`, :class:`~layerwise.losses.LocalClassifier`,
:mod:`layerwise.weighting` and :func:`layerwise.backward` in an ordinary training loop
(:mod:`._aux_train`). ``results.json`` is rewritten after every epoch; with ``resume`` every
(method, seed) already complete (or diverged) is kept and the others are run again from scratch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from layerwise.data import load_dataset

from ..core._record import Record, check_names
from ._aux_model import AUX_METHODS
from ._aux_report import write_aux_report
from ._aux_train import AuxConfig, train_aux

__all__ = ["AuxConfig", "run_aux_benchmark"]


def _load(
    cfg: AuxConfig, data_dir: str | Path | None, device: torch.device, download: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    d = load_dataset(cfg.dataset, data_dir, download=download)
    n = len(d.train_x) if cfg.subset is None else min(cfg.subset, len(d.train_x))
    return (
        torch.from_numpy(d.train_x[:n]).float().to(device),
        torch.from_numpy(d.train_y[:n]).long().to(device),
        torch.from_numpy(d.test_x).float().to(device),
        torch.from_numpy(d.test_y).long().to(device),
    )


def run_aux_benchmark(
    out: str | Path,
    *,
    methods: Sequence[str] = tuple(AUX_METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    cfg: AuxConfig | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Train every method with every seed; keep ``out/results.json`` current; write ``report.md`` and plots.

    Raises:
        ValueError: unknown method, or ``resume`` with a different configuration.
        FileExistsError: ``out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    cfg = cfg or AuxConfig()
    check_names("methods", methods, AUX_METHODS)
    if not seeds:
        raise ValueError("Invalid seeds: expected at least one seed, e.g. 0,1,2.")
    device = torch.device(device)
    record = Record(out, "aux", asdict(cfg), command=command, device=device, resume=resume, overwrite=overwrite)
    results = record.results
    # a resumed run may add methods: the report covers every method the directory holds
    every = [*results.get("methods", []), *[m for m in methods if m not in results.get("methods", [])]]
    results.update(
        methods=every,
        seeds=sorted(set(results.get("seeds", [])) | set(seeds)),
        descriptions={m: AUX_METHODS[m].summary for m in every if m in AUX_METHODS},
    )
    data = _load(cfg, data_dir, device, download)
    results["train_examples"], results["test_examples"] = len(data[0]), len(data[2])
    # seed-major order: a partial run already holds every method for the first seeds
    for seed in seeds:
        for method in methods:
            key = f"{method}/{seed}"
            if not record.finished(key):
                save = functools.partial(record.save_run, key)
                save(train_aux(method, seed, cfg, data, progress=progress, on_epoch=save))
    record.save()
    write_aux_report(results, out)
    return results
