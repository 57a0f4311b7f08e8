"""One timed training epoch of a plain MLP, decoupled (optionally one stage of a layer-parallel run) or
by backprop; launched as a process by :func:`layerwise_bench.run_parallel_benchmark`.

    python -m layerwise_bench.systems._parallel_worker CONFIG_JSON OUT_JSON [RANK WORLD INIT_METHOD]
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from layerwise.data import load_dataset
from layerwise.decoupled import DecoupledTrainer, IndexedDataset, ZStore, geometric


def blocks_for(cfg: dict[str, Any], in_features: int) -> list[nn.Module]:
    torch.manual_seed(cfg["seed"])
    w = cfg["width"]
    out: list[nn.Module] = [
        nn.Sequential(nn.Linear(in_features if t == 0 else w, w), nn.Tanh()) for t in range(cfg["depth"] - 1)
    ]
    out.append(nn.Linear(w, 10))
    return out


def run(cfg: dict[str, Any], rank: int = 0, world: int = 1, init: str | None = None) -> dict[str, Any]:
    torch.set_num_threads(cfg["threads"])
    data = load_dataset(cfg["dataset"], cfg["data_dir"])
    n = cfg["subset"] or len(data.train_x)
    x, y = torch.from_numpy(data.train_x[:n]), torch.from_numpy(data.train_y[:n])
    ds = IndexedDataset(x, y)
    blocks = blocks_for(cfg, x.shape[1])
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=init, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
        )
    gen = torch.Generator().manual_seed(cfg["seed"])
    loader = DataLoader(ds, batch_size=cfg["batch_size"], shuffle=True, generator=gen)
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
        store = ZStore(
            n, [(cfg["width"],)] * (cfg["depth"] - 1), layers=None if world == 1 else _stage_layers(blocks, world, rank)
        )
        trainer = DecoupledTrainer(
            blocks,
            store,
            mu=geometric(1.0, 1.2, 50, cap=1e3),
            z_lr=1.0,
            z_steps=cfg["z_steps"],
            optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg["lr"], fused=True),
            process_group="auto" if world > 1 else None,
        )
        start = time.perf_counter()
        trainer.initialize(DataLoader(ds, batch_size=1000))
        result["init_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for batch in loader:
            trainer.step(batch)
        result["epoch_s"] = time.perf_counter() - start
        result["z_bytes"] = store.nbytes()
        result["stage"] = list(trainer.stage)
        trainer.gather()
        forward = trainer
    with torch.no_grad():
        logits = torch.cat([forward(x[i : i + 2000]) for i in range(0, n, 2000)])
        result["train_loss"] = float(F.cross_entropy(logits, y))
        result["train_acc"] = float((logits.argmax(1) == y).double().mean())
    if world > 1:
        dist.destroy_process_group()
    return result


def _stage_layers(blocks: list[nn.Module], world: int, rank: int) -> list[int]:
    from layerwise.decoupled import split_blocks

    starts = split_blocks(blocks, world)
    a = starts[rank]
    b = starts[rank + 1] if rank + 1 < world else len(blocks)
    return [j for j in range(len(blocks) - 1) if a - 1 <= j <= b - 1]


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    extra = sys.argv[3:]
    res = run(config, int(extra[0]), int(extra[1]), extra[2]) if extra else run(config)
    with open(sys.argv[2], "w") as f:
        json.dump(res, f)
    # The result is written. Skip interpreter finalisation: a gloo worker thread still releasing the last
    # collective's tensors needs the GIL, and if finalisation wins that race the process aborts
    # (pytorch/pytorch#190489, open).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
