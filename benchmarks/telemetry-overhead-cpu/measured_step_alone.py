"""Per-step time and minor page faults of a measured step that comes after 49 plain steps (every=50), K = argv[1]."""

import resource
import statistics
import sys
import time

import torch
from layerwise.bench._telemetry_bench import (
    DeepSupervisionMLP,
    _fill_ours,
    _telemetry,
    tap_depths,
)

torch.set_num_threads(1)
K = int(sys.argv[1]) if len(sys.argv) > 1 else 8
torch.manual_seed(0)
model = DeepSupervisionMLP(tap_depths(K))
x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
tel = _telemetry(model, 50)
fill = _fill_ours(x, y, tel)
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
rows = []
for i in range(50 * 8):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    fill(model)
    opt.step()
    dt = (time.perf_counter() - t0) * 1e3
    rows.append((i % 50, dt, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0))
cycles = [rows[c * 50 : (c + 1) * 50] for c in range(1, 8)]  # after one warm-up cycle
base = statistics.median(r[1] for cy in cycles for r in cy[1:])
print(
    K,
    "whole 50-step cycle vs 50 x the median skipped step:",
    [f"{(sum(r[1] for r in cy) / (50 * base) - 1) * 100:+.1f}%" for cy in cycles],
)
meas = [r for r in rows[50:] if r[0] == 0]
plain = [r for r in rows[50:] if r[0] != 0]
print(K, "measured ms", [round(r[1], 1) for r in meas], "faults", [r[2] for r in meas])
print(
    K,
    "plain median ms",
    round(statistics.median(r[1] for r in plain), 2),
    "faults median",
    statistics.median(r[2] for r in plain),
)
print(K, "step after measured", [round(r[1], 1) for r in rows[50:] if r[0] == 1])
