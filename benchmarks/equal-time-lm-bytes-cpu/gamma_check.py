"""Untimed check of LocoProp's gamma on lm-bytes: 200 steps of batch 32 (6,400 training windows), 1 thread; prints
the final training and validation loss of AdamW (the rate the equal-time record chose) and of LocoProp's
transformer recipe at gamma = 100, 1,000, 3,200 and 10,000.

    python benchmarks/equal-time-lm-bytes-cpu/gamma_check.py
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

import layerwise_bench as bench

torch.set_num_threads(1)
task = bench.get_workload("lm-bytes")
cfg = bench.RunConfig(dataset="stdlib", workload="lm-bytes", epochs=1, subset=200 * 32)
data = task.load(cfg, None, False, "cpu")
loco, adamw = bench.get_method("locoprop-transformer"), bench.get_method("adamw")
runs = [("adamw", adamw, 3e-3 * 3.16)] + [
    (f"locoprop gamma={g:g}", replace(loco, hparams={**loco.hparams, "gamma": g}), 1e-3)
    for g in (100.0, 1000.0, 3200.0, 10000.0)
]
for name, method, lr in runs:
    t0 = time.time()
    last = bench.train_method(method, lr, data, cfg, progress=False)[-1]
    print(name, round(last["train_loss"], 3), round(last["test_loss"], 3), f"{time.time() - t0:.1f} s", flush=True)
