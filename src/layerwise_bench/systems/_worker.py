"""The worker process of the systems benchmarks (launched by :func:`~._parallel.launch`).

    python -m layerwise_bench.systems._worker CONFIG_JSON OUT_JSON [RANK WORLD INIT_METHOD]

``CONFIG_JSON["worker"]`` picks the work: ``parallel`` (one timed epoch of a plain tanh MLP, decoupled, as one
stage of a layer-parallel run when WORLD > 1, or by backprop) or ``zstore`` (build a z store, then time steps).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from layerwise.data import load_dataset
from layerwise.decoupled import DecoupledTrainer, IndexedDataset, ZStore, geometric, split_blocks


def _setup(cfg: dict[str, Any], n: int | None) -> tuple[torch.Tensor, torch.Tensor, list[nn.Module]]:
    """The first ``n`` training examples (all when None) and the plain tanh MLP's blocks (seeded)."""
    torch.set_num_threads(cfg["threads"])
    data = load_dataset(cfg["dataset"], cfg["data_dir"])
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    x, y = (x[:n], y[:n]) if n else (x, y)
    torch.manual_seed(cfg.get("seed", 0))
    w = cfg["width"]
    blocks: list[nn.Module] = [
        nn.Sequential(nn.Linear(x.shape[1] if t == 0 else w, w), nn.Tanh()) for t in range(cfg["depth"] - 1)
    ]
    return x, y, [*blocks, nn.Linear(w, 10)]


def _timed_init(trainer: DecoupledTrainer, ds: IndexedDataset) -> float:
    start = time.perf_counter()
    trainer.initialize(DataLoader(ds, batch_size=1000))
    return time.perf_counter() - start


def _stage_layers(blocks: list[nn.Module], world: int, rank: int) -> list[int]:
    """The hidden layers whose z the stage of ``rank`` reads or writes."""
    starts = split_blocks(blocks, world)
    a, b = starts[rank], starts[rank + 1] if rank + 1 < world else len(blocks)
    return [j for j in range(len(blocks) - 1) if a - 1 <= j <= b - 1]


def parallel(cfg: dict[str, Any], rank: int = 0, world: int = 1, init: str | None = None) -> dict[str, Any]:
    """One timed epoch; the training loss and accuracy of the whole network after it."""
    x, y, blocks = _setup(cfg, cfg["subset"])
    n, ds = len(x), IndexedDataset(x, y)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=init, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
        )
    loader = DataLoader(
        ds, batch_size=cfg["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(cfg["seed"])
    )
    result: dict[str, Any] = {"rank": rank, "world": world, "threads": cfg["threads"]}
    forward: Callable[[torch.Tensor], torch.Tensor]
    if cfg["method"] == "backprop":
        net = nn.Sequential(*blocks)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], fused=True)
        start = time.perf_counter()
        for xb, yb, _ in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
        result["epoch_s"] = time.perf_counter() - start
        forward = net
    else:
        layers = None if world == 1 else _stage_layers(blocks, world, rank)
        store = ZStore(n, [(cfg["width"],)] * (cfg["depth"] - 1), layers=layers)
        trainer = DecoupledTrainer(
            blocks,
            store,
            mu=geometric(1.0, 1.2, 50, cap=1e3),
            z_lr=1.0,
            z_steps=cfg["z_steps"],
            optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg["lr"], fused=True),
            process_group="auto" if world > 1 else None,
        )
        result["init_s"] = _timed_init(trainer, ds)
        start = time.perf_counter()
        for batch in loader:
            trainer.step(batch)
        result.update(epoch_s=time.perf_counter() - start, z_bytes=store.nbytes(), stage=list(trainer.stage))
        trainer.gather()
        forward = trainer
    with torch.no_grad():
        logits = torch.cat([forward(x[i : i + 2000]) for i in range(0, n, 2000)])
        result["train_loss"] = float(F.cross_entropy(logits, y))
        result["train_acc"] = float((logits.argmax(1) == y).double().mean())
    if world > 1:
        dist.destroy_process_group()
    return result


def zstore(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build the store (``cfg["dtype"]``, memory-mapped at ``cfg["path"]`` when ``cfg["mmap"]``), then time steps."""
    x, y, blocks = _setup(cfg, cfg["n"])
    dtype = torch.bfloat16 if cfg["dtype"] == "bfloat16" else torch.float32
    path = cfg["path"] if cfg["mmap"] else None
    store = ZStore(len(x), [(cfg["width"],)] * (cfg["depth"] - 1), dtype=dtype, path=path)
    trainer = DecoupledTrainer(blocks, store, process_group=None)
    ds = IndexedDataset(x, y)
    init_s = _timed_init(trainer, ds)
    start = time.perf_counter()
    terms: dict[str, float] = {}
    for i, batch in enumerate(DataLoader(ds, batch_size=cfg["batch_size"], shuffle=True)):
        if i == cfg["steps"]:
            break
        terms = trainer.step(batch)
    store.flush()
    steps = min(cfg["steps"], i + 1)
    return {
        "z_bytes": store.nbytes(),
        "init_s": init_s,
        "steps": steps,
        "step_s": (time.perf_counter() - start) / max(1, steps),
        "last_terms": terms,
    }


if __name__ == "__main__":
    config, extra = json.loads(sys.argv[1]), sys.argv[3:]
    if config["worker"] == "zstore":
        res = zstore(config)
    else:
        res = parallel(config, int(extra[0]), int(extra[1]), extra[2]) if extra else parallel(config)
    Path(sys.argv[2]).write_text(json.dumps(res))
    # The result is written. Skip interpreter finalisation: a gloo worker thread still releasing the last
    # collective's tensors needs the GIL, and if finalisation wins that race the process aborts
    # (pytorch/pytorch#190489, open).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
