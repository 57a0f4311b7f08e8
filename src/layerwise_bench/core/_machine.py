"""The machine a number was measured on, and whether its CPU multiplies bfloat16 natively (without AVX512-BF16 or
AMX a bfloat16 matmul is emulated and tens of times slower than float32)."""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ISA_FLAGS",
    "bf16_matmul_ratio",
    "cpu_model",
    "describe_machine",
    "distinct_machines",
    "machine",
    "native_bf16",
    "same_machine",
]

_PROBE = 384


def _fastest_matmul_s(dtype: torch.dtype) -> float:
    """The fastest of 9 products of two 384x384 matrices, on one thread: the minimum, because a busy machine only
    ever slows a run down (a median over all threads flipped the verdict beside other processes)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(_PROBE, _PROBE, generator=gen).to(dtype)
    b = torch.randn(_PROBE, _PROBE, generator=gen).to(dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a @ b  # warm-up
        times = []
        for _ in range(9):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return min(times)


@functools.cache
def bf16_matmul_ratio() -> float:
    """Time of a 384x384 bfloat16 matmul over the same in float32, on one thread of this process' CPU (measured
    once per process, the fastest of 9 each)."""
    return _fastest_matmul_s(torch.bfloat16) / max(_fastest_matmul_s(torch.float32), 1e-9)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 products are fast on ``device``: always on CUDA; on the CPU, when a measured bf16
    matmul takes at most twice a float32 one (emulated bf16 takes 10-40x)."""
    if torch.device(device).type == "cuda":
        return True
    return bf16_matmul_ratio() <= 2.0


#: the /proc/cpuinfo flags that change how fast a step runs, by the name the record keeps
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
_ISA_NAMES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}
#: environment variables that cap the instruction set oneDNN / ATen use (emulating an older CPU)
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
CPUINFO = "/proc/cpuinfo"


def _cpuinfo(path: str | Path = CPUINFO) -> tuple[str | None, set[str] | None]:
    """The first "model name" and "flags" of ``path`` (None, None where it cannot be read)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None, None
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key in ("flags", "Features") and flags is None:  # x86 "flags", ARM "Features"
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return model, flags


def cpu_model(cpuinfo: str | Path = CPUINFO) -> str:
    """The CPU's model name ("model name" in ``cpuinfo``), else ``platform.processor()`` or ``platform.machine()``."""
    return _cpuinfo(cpuinfo)[0] or platform.processor() or platform.machine() or "unknown CPU"


def machine(device: torch.device | str = "cpu", *, cpuinfo: str | Path = CPUINFO) -> dict[str, Any]:
    """What decides a benchmark's speed on this machine, JSON-serialisable: CPU model, the ISA flags that change
    speed (None where ``cpuinfo`` cannot be read), the CPU capability ATen dispatches to, the ISA caps set in the
    environment, logical CPUs and those this process may use, torch threads, Python, torch version and build, the
    measured bf16/fp32 matmul time ratio and ``native_bf16``; for a CUDA ``device``, the GPU and its capability."""
    device = torch.device(device)
    model, flags = _cpuinfo(cpuinfo)
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS / Windows
        usable = None
    git = torch.version.git_version or ""
    env: dict[str, Any] = {
        "cpu_model": model or platform.processor() or platform.machine() or "unknown CPU",
        "cpu_flags": {f: (None if flags is None else f in flags) for f in ISA_FLAGS},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_env": {k: os.environ[k] for k in ISA_ENV if os.environ.get(k)},
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_build": {"cuda": torch.version.cuda or "cpu", "git": git[:7] or None},
        "bf16_matmul_ratio": round(bf16_matmul_ratio(), 3),
        "native_bf16": native_bf16(device),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return env


def _plural(n: Any, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def describe_machine(env: dict[str, Any] | None) -> str:
    """One line for a report naming the machine of a record's ``environment``, e.g. "AMD EPYC 9xxx (AVX2,
    AVX-512, AVX512-BF16; bf16 matmul 0.44x fp32), 2 CPUs, 1 torch thread, torch 2.13.0+cpu, cpu". Records
    written before :func:`machine` existed (python, torch, platform, processor, torch_threads, device) say what
    they hold and that the CPU model was not recorded."""
    env = env or {}
    model = env.get("cpu_model") or env.get("cpu")  # telemetry records kept the model as "cpu"
    inside: list[str] = []
    flags = env.get("cpu_flags")
    if isinstance(flags, dict) and any(v is not None for v in flags.values()):
        have = [name for f, name in _ISA_NAMES.items() if flags.get(f)]
        if flags.get("amx_tile") and not flags.get("amx_bf16"):
            have.append("AMX")
        inside.append(", ".join(have) if have else "no AVX2")
    elif "cpu_flags" in env:
        inside.append("ISA flags unknown")
    ratio = env.get("bf16_matmul_ratio")
    if isinstance(ratio, int | float):
        inside.append(f"bf16 matmul {ratio:.2f}x fp32" + ("" if env.get("native_bf16", True) else ", emulated"))
    caps = env.get("isa_env") or {}
    inside += [f"{k}={v}" for k, v in caps.items()]
    if model:
        head = str(model)
    else:
        head = "CPU model not recorded" + (f" ({env['processor']})" if env.get("processor") else "")
    if inside:
        head += f" ({'; '.join(inside)})"
    parts = [head]
    cpus = env.get("cpus_usable") or env.get("cpu_count")
    if cpus:
        total = env.get("cpu_count")
        parts.append(_plural(cpus, "CPU") + (f" of {total}" if total and total != cpus else ""))
    parts.append(_plural(env.get("torch_threads", "?"), "torch thread"))
    parts.append(f"torch {env.get('torch', '?')}")
    device = str(env.get("device", "?"))
    if env.get("gpu"):
        cap = env.get("gpu_capability")
        device += f" ({env['gpu']}" + (f", sm {cap}" if cap else "") + ")"
    parts.append(device)
    return ", ".join(parts)


def _key(env: dict[str, Any]) -> tuple[Any, ...]:
    """What two environments must share to be one machine: CPU model, ISA flags, the ISA capped by the
    environment, torch threads, device and GPU; for records before :func:`machine` (no "cpu_model"), the
    processor, threads and device they kept."""
    base = (env.get("torch_threads"), env.get("device"), env.get("gpu"))
    if "cpu_model" not in env:
        return ("old", env.get("processor"), *base)
    flags = env.get("cpu_flags") or {}
    caps = env.get("isa_env") or {}
    return (
        "new",
        env.get("cpu_model"),
        tuple(flags.get(f) for f in ISA_FLAGS),
        tuple(sorted(caps.items())),
        *base,
    )


def same_machine(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two records' environments name the same machine (CPU model, ISA flags and caps, torch threads,
    device). Where either was written before :func:`machine` existed, only what both kept is compared:
    processor, torch threads and device."""
    a, b = a or {}, b or {}
    if "cpu_model" in a and "cpu_model" in b:
        return _key(a) == _key(b)
    keys = ("processor", "torch_threads", "device")
    return all(a.get(k) == b.get(k) for k in keys)


def distinct_machines(envs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``envs`` with each machine kept once (the first environment seen of it), in order."""
    seen: list[dict[str, Any]] = []
    for env in envs:
        if not any(same_machine(env, s) for s in seen):
            seen.append(env)
    return seen
