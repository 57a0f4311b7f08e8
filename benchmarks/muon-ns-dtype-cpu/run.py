"""One Muon step on a 500x784 weight: Newton–Schulz in bfloat16 (torch.optim.Muon's) against float32, on this
CPU as it is and with oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``, a CPU without native bfloat16).

    python benchmarks/muon-ns-dtype-cpu/run.py [--threads 1] [--repeats 7]

Each ISA setting runs in its own process (oneDNN reads the variable once); medians in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def measure(threads: int, repeats: int) -> dict[str, float]:
    import torch

    from layerwise_bench.core._machine import bf16_matmul_ratio, native_bf16
    from layerwise_bench.methods._muon import Muon

    torch.set_num_threads(threads)
    out: dict[str, float] = {}
    for label, make in [
        ("torch.optim.Muon", lambda p: torch.optim.Muon([p], lr=0.02, weight_decay=0.0)),
        ("Muon ns_dtype=bfloat16", lambda p: Muon([p], lr=0.02, weight_decay=0.0, ns_dtype=torch.bfloat16)),
        ("Muon ns_dtype=float32", lambda p: Muon([p], lr=0.02, weight_decay=0.0, ns_dtype=torch.float32)),
    ]:
        gen = torch.Generator().manual_seed(0)
        p = torch.randn(500, 784, generator=gen).requires_grad_()
        p.grad = torch.randn(500, 784, generator=gen)
        opt = make(p)
        opt.step()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
        out[label] = 1e3 * statistics.median(times)
    out["native_bf16"] = float(native_bf16("cpu"))
    out["bf16_matmul_ratio"] = bf16_matmul_ratio()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.threads, args.repeats)))
        return
    rows = {}
    for isa in ("native", "AVX2"):
        env = dict(os.environ)
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if isa == "AVX2":
            env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--repeats", str(args.repeats)]
        rows[isa] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    labels = [k for k in rows["native"] if k.startswith(("torch", "Muon"))]
    print(f"one Muon step on a 500x784 weight, {args.threads} thread(s), median of {args.repeats} (ms)")
    print(f"| {'':24} | {'this CPU':>9} | {'ONEDNN_MAX_CPU_ISA=AVX2':>24} |")
    print(f"|{'-' * 26}|{'-' * 10}:|{'-' * 25}:|")
    for k in labels:
        print(f"| {k:24} | {rows['native'][k]:9.1f} | {rows['AVX2'][k]:24.1f} |")
    for isa, r in rows.items():
        print(f"{isa}: native_bf16()={bool(r['native_bf16'])}, bf16/fp32 matmul ratio {r['bf16_matmul_ratio']:.2f}")


if __name__ == "__main__":
    main()
