"""Seconds per step of plain steps against steps through ``layerwise.backward`` with a telemetry, K = argv[1].

Paths (each its own copy of the bench model, SGD), blocks of 50 steps round-robin with a rotating order,
median of 6 rounds after a warm-up round: ``plain``; ``e50`` (every=50, ``model=``); ``eNever`` (a
telemetry that is due only at step 0: the cost of skipped steps); ``e50nomodel`` (every=50 without ``model=``).
"""

import copy
import statistics
import sys
import time

import torch
from layerwise.bench._telemetry_bench import DeepSupervisionMLP, _fill_ours, _fill_plain, _telemetry, tap_depths

from layerwise.telemetry import GradientTelemetry

torch.set_num_threads(1)
K = int(sys.argv[1]) if len(sys.argv) > 1 else 8
torch.manual_seed(0)
base = DeepSupervisionMLP(tap_depths(K))
x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
names = ["plain", "e50", "eNever", "e50nomodel"]
models = {k: copy.deepcopy(base) for k in names}
plain_sets = {
    "all": models["e50nomodel"].parameters(),
    "shared": models["e50nomodel"].trunk,
    "last_shared": models["e50nomodel"].trunk[-1],
}
fills = {
    "plain": _fill_plain(x, y),
    "e50": _fill_ours(x, y, _telemetry(models["e50"], 50)),
    "eNever": _fill_ours(x, y, _telemetry(models["eNever"], 10**9)),
    "e50nomodel": _fill_ours(x, y, GradientTelemetry(plain_sets, every=50)),
}
opts = {k: torch.optim.SGD(models[k].parameters(), lr=1e-3) for k in names}
times: dict[str, list[float]] = {k: [] for k in names}
for r in range(7):
    for k in names[r % 4 :] + names[: r % 4]:
        t0 = time.perf_counter()
        for _ in range(50):
            opts[k].zero_grad(set_to_none=True)
            fills[k](models[k])
            opts[k].step()
        times[k].append((time.perf_counter() - t0) / 50 * 1e3)
print(K, {k: round(statistics.median(v[1:]), 2) for k, v in times.items()})
