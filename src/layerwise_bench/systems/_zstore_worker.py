"""One z-store option at scale, in its own process (see :mod:`layerwise_bench.systems._zstore`).

python -m layerwise_bench.systems._zstore_worker CONFIG_JSON OUT_JSON
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    from torch import nn
    from torch.utils.data import DataLoader

    from layerwise.data import load_dataset
    from layerwise.decoupled import DecoupledTrainer, IndexedDataset, ZStore

    torch.set_num_threads(cfg["threads"])
    data = load_dataset(cfg["dataset"], cfg["data_dir"])
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    if cfg["n"]:
        x, y = x[: cfg["n"]], y[: cfg["n"]]
    torch.manual_seed(0)
    w, depth = cfg["width"], cfg["depth"]
    blocks: list[nn.Module] = [
        nn.Sequential(nn.Linear(x.shape[1] if t == 0 else w, w), nn.Tanh()) for t in range(depth - 1)
    ]
    blocks.append(nn.Linear(w, 10))
    dtype = torch.bfloat16 if cfg["dtype"] == "bfloat16" else torch.float32
    store = ZStore(len(x), [(w,)] * (depth - 1), dtype=dtype, path=cfg["path"] if cfg["mmap"] else None)
    trainer = DecoupledTrainer(blocks, store, process_group=None)
    ds = IndexedDataset(x, y)
    start = time.perf_counter()
    trainer.initialize(DataLoader(ds, batch_size=1000))
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    terms: dict[str, float] = {}
    for i, batch in enumerate(DataLoader(ds, batch_size=cfg["batch_size"], shuffle=True)):
        if i == cfg["steps"]:
            break
        terms = trainer.step(batch)
    store.flush()
    return {
        "z_bytes": store.nbytes(),
        "init_s": init_s,
        "steps": min(cfg["steps"], i + 1),
        "step_s": (time.perf_counter() - start) / max(1, min(cfg["steps"], i + 1)),
        "last_terms": terms,
    }


if __name__ == "__main__":
    result = _worker(json.loads(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(result))
