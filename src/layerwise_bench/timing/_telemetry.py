"""Cost of per-loss-term gradient telemetry (``layerwise.backward(..., telemetry=...)``) against a plain step and
against K separate ``torch.autograd.grad`` calls, on a deep-supervision MLP: a ReLU trunk 784 → 512 ×8 with K
cross-entropy heads at depths round(8k/K), k = 1..K (the last, ``main``, at the output), on random data, SGD.

Paths, each on its own copy of the model, timed in blocks of consecutive steps, round-robin with a rotating order
after a warm-up round (median over rounds of block time / steps): ``plain`` (sum of the terms, ``.backward()``);
``kgrad`` (K ``autograd.grad`` calls summed into ``.grad``); ``kgrad_stats`` (``kgrad``, then the same statistics
from those gradients, ``GradientTelemetry.record``); ``every1`` and ``everyN`` (``layerwise.backward`` with
telemetry every step / every N steps; sets ``all``, ``shared``, ``last_shared``).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..core._harness import round_robin_times
from ..core._machine import cpu_model
from ..core._plotting import figure, save_png
from ..core._record import Record, machine_lines, save_report

__all__ = ["DeepSupervisionMLP", "run_telemetry_benchmark", "write_telemetry_report"]

PATHS = ("plain", "kgrad", "kgrad_stats", "every1", "everyN")
Fill = Callable[[nn.Module], None]  # fills .grad of the model's parameters for one step


class DeepSupervisionMLP(nn.Module):
    """ReLU trunk of ``depth`` Linear layers, a Linear(width, classes) + cross-entropy head after each tap."""

    def __init__(
        self, taps: Sequence[int], *, in_features: int = 784, width: int = 512, depth: int = 8, classes: int = 10
    ) -> None:
        super().__init__()
        if not taps or any(not 1 <= d <= depth for d in taps) or len(set(taps)) != len(taps):
            raise ValueError(f"Invalid {taps=}: expected distinct depths between 1 and {depth}.")
        self.depth = depth
        self.trunk = nn.ModuleList([nn.Linear(in_features if i == 0 else width, width) for i in range(depth)])
        self.heads = nn.ModuleDict({self.term(d): nn.Linear(width, classes) for d in sorted(taps)})

    def term(self, depth: int) -> str:
        return "main" if depth == self.depth else f"aux{depth}"

    def forward(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        losses = {}
        h = x
        for d, layer in enumerate(self.trunk, 1):
            h = F.relu(layer(h))
            if self.term(d) in self.heads:
                losses[self.term(d)] = F.cross_entropy(self.heads[self.term(d)](h), y)
        return losses


def tap_depths(k: int, depth: int = 8) -> list[int]:
    """K evenly spaced tap depths round(depth·i/K), i = 1..K, the last at the output."""
    if not 1 <= k <= depth:
        raise ValueError(f"Invalid K={k}: expected 1 <= K <= {depth} (one tap per trunk layer at most).")
    return [round(depth * i / k) for i in range(1, k + 1)]


def _fill_plain(x: Tensor, y: Tensor) -> Fill:
    def fill(model: nn.Module) -> None:
        sum(model(x, y).values()).backward()

    return fill


def _fill_kgrad(x: Tensor, y: Tensor, telemetry: Any = None) -> Fill:
    """K ``autograd.grad`` calls and their sum into ``.grad``; with ``telemetry`` (built without ``model=``), the
    statistics are then computed from those gradients (``GradientTelemetry.record``)."""

    def fill(model: nn.Module) -> None:
        params = list(model.parameters()) if telemetry is None else telemetry.params  # "all": every parameter
        losses = model(x, y)
        terms = list(losses)
        grads = {
            t: torch.autograd.grad(losses[t], params, retain_graph=i < len(terms) - 1, allow_unused=True)
            for i, t in enumerate(terms)
        }
        if telemetry is not None:
            telemetry.record({t: v.detach() for t, v in losses.items()}, grads, dict.fromkeys(terms, 1.0))
        for j, p in enumerate(params):
            gs = [grads[t][j] for t in terms if grads[t][j] is not None]
            acc = gs[0]
            for g in gs[1:]:
                acc += g
            p.grad = acc

    return fill


def _fill_ours(x: Tensor, y: Tensor, telemetry: Any) -> Fill:
    from layerwise import backward

    def fill(model: nn.Module) -> None:
        backward(model(x, y), params=model.parameters(), telemetry=telemetry)

    return fill


def _telemetry(model: DeepSupervisionMLP, every: int, keep_history: bool = False, factored: bool = True) -> Any:
    """Sets all, shared (the trunk), last_shared (its last layer); ``factored``: built with ``model=``."""
    from layerwise.telemetry import GradientTelemetry

    sets: dict[str, nn.Module | Iterable[Tensor]] = {
        "all": model.parameters(),
        "shared": model.trunk,
        "last_shared": model.trunk[-1],
    }
    return GradientTelemetry(sets, every=every, keep_history=keep_history, model=model if factored else None)


def _check(model: DeepSupervisionMLP, x: Tensor, y: Tensor) -> dict[str, float]:
    """Same gradients from the four ways, and telemetry norms (ours and the reference's) equal to ‖g_k‖ of
    the K autograd.grad calls."""
    models = {name: copy.deepcopy(model) for name in ("plain", "kgrad", "kgrad_stats", "ours")}
    tel = _telemetry(models["ours"], 1, keep_history=True)
    ref = _telemetry(models["kgrad_stats"], 1, keep_history=True, factored=False)
    _fill_plain(x, y)(models["plain"])
    _fill_kgrad(x, y)(models["kgrad"])
    _fill_kgrad(x, y, ref)(models["kgrad_stats"])
    _fill_ours(x, y, tel)(models["ours"])
    got = {
        name: [torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()] for name, m in models.items()
    }
    scale = max(float(g.abs().max()) for g in got["plain"])
    diff = {
        f"{a}_vs_plain": max(float((g - r).abs().max()) for g, r in zip(got[a], got["plain"], strict=True)) / scale
        for a in ("kgrad", "kgrad_stats", "ours")
    }
    params = list(model.parameters())
    norms = {}
    for t, v in model(x, y).items():
        gs = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
        norms[t] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gs if g is not None))
    for name, t_ in (("norms_vs_autograd", tel), ("reference_norms_vs_autograd", ref)):
        diff[name] = max(abs(t_.history[0].norms["all"][t] - n) / n for t, n in norms.items())
    if max(diff.values()) > 1e-3:
        raise RuntimeError(
            f"The benchmark's paths disagree (relative differences {diff}); timings would compare "
            "different computations."
        )
    return diff


def _time_k(
    k: int, x: Tensor, y: Tensor, *, steps: int, short_steps: int, every: int, repeats: int, lr: float
) -> dict[str, Any]:
    base = DeepSupervisionMLP(tap_depths(k)).to(x.device)
    check = _check(base, x, y)
    models = {name: copy.deepcopy(base) for name in PATHS}
    fills = {
        "plain": _fill_plain(x, y),
        "kgrad": _fill_kgrad(x, y),
        "kgrad_stats": _fill_kgrad(x, y, _telemetry(models["kgrad_stats"], 1, factored=False)),
        "every1": _fill_ours(x, y, _telemetry(models["every1"], 1)),
        "everyN": _fill_ours(x, y, _telemetry(models["everyN"], every)),
    }
    opts = {name: torch.optim.SGD(m.parameters(), lr=lr) for name, m in models.items()}
    block = {"plain": steps, "kgrad": short_steps, "kgrad_stats": short_steps, "every1": short_steps, "everyN": steps}

    def step(name: str) -> None:
        opts[name].zero_grad(set_to_none=True)
        fills[name](models[name])
        opts[name].step()

    times = round_robin_times(
        {name: functools.partial(step, name) for name in PATHS},
        x.device,
        repeats=repeats,
        warmup=1,  # a warm-up round of short blocks
        block=block,
        warmup_block=short_steps,
        rotate=True,
    )
    med = {name: statistics.median(v) for name, v in times.items()}
    return {
        "k": k,
        "taps": tap_depths(k),
        "terms": [base.term(d) for d in tap_depths(k)],
        **{f"{name}_s": med[name] for name in PATHS},
        "every1_vs_kgrad": med["every1"] / med["kgrad"],
        "every1_vs_kgrad_stats": med["every1"] / med["kgrad_stats"],
        "everyN_overhead": med["everyN"] / med["plain"] - 1,
        "check": check,
        "times": times,
    }


def run_telemetry_benchmark(
    out: str | Path,
    *,
    k: Sequence[int] = (2, 4, 8),
    steps: int = 100,
    every: int = 50,
    repeats: int = 5,
    short_steps: int = 10,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    lr: float = 1e-3,
    command: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Seconds per training step of each path for each K; writes ``results.json``, ``report.md`` and a plot (blocks of
    ``steps``, a multiple of ``every``, for plain and everyN; ``short_steps`` for the others)."""
    for name, v in (
        ("steps", steps),
        ("every", every),
        ("repeats", repeats),
        ("short_steps", short_steps),
        ("batch_size", batch_size),
    ):
        if v < 1:
            raise ValueError(f"Invalid {name}={v}. Must be >= 1.")
    if steps % every:
        raise ValueError(
            f"Invalid steps={steps} for every={every}: steps must be a multiple of every, so that each "
            f"timed block holds the same number of measured steps (e.g. --steps {2 * every})."
        )
    for kk in k:
        tap_depths(kk)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for CUDA, but torch sees no CUDA device. Use --device cpu.")
    n_params = sum(p.numel() for p in DeepSupervisionMLP(tap_depths(max(k))).trunk.parameters())
    config = {
        "k": list(k),
        "steps": steps,
        "short_steps": min(short_steps, steps),
        "every": every,
        "repeats": repeats,
        "batch_size": batch_size,
        "lr": lr,
        "trunk_params": n_params,
        "head_params": 512 * 10 + 10,
        "sets": ["all", "shared", "last_shared"],
    }
    record = Record(
        out, "telemetry-overhead", config, command=command, device=device, overwrite=overwrite, runs_key=None
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 784, generator=gen).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=gen).to(device)
    env = record.results["environment"]
    env.update(cpu=cpu_model(), cpu_count=os.cpu_count(), load_before=os.getloadavg())
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)
        rows = [
            _time_k(kk, x, y, steps=steps, short_steps=min(short_steps, steps), every=every, repeats=repeats, lr=lr)
            for kk in k
        ]
    env["load_after"] = os.getloadavg()
    results = record.results
    results.update(
        rows=rows,
        acceptance={
            "every1_le_kgrad": {r["k"]: r["every1_vs_kgrad"] <= 1.0 for r in rows},
            "every1_le_kgrad_stats": {r["k"]: r["every1_vs_kgrad_stats"] <= 1.0 for r in rows},
            "everyN_under_5pct": {r["k"]: r["everyN_overhead"] < 0.05 for r in rows},
        },
    )
    return record.finish(write_telemetry_report)


def write_telemetry_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.md`` and ``out/step_time_vs_k.png`` for a telemetry-overhead record."""
    path = save_report(out, _report(results))
    _plot(results["rows"], results["config"]["every"], Path(out) / "step_time_vs_k.png")
    return path


def _report(res: dict[str, Any]) -> list[str]:
    cfg, env, rows = res["config"], res["environment"], res["rows"]
    n = cfg["every"]
    lines = [
        "# Per-loss-term gradient telemetry: cost per training step",
        "",
        f"Command: `{res['command']}`",
        "",
        *machine_lines(res),
        "",
        f"Python {env['python']}, {env['platform']}, {env['cpu_count']} logical CPUs, torch threads: "
        f"{env['torch_threads']}. Load average (1, 5, 15 min) before: "
        f"{', '.join(f'{v:.2f}' for v in env['load_before'])}; after: "
        f"{', '.join(f'{v:.2f}' for v in env['load_after'])}."
        + (
            " **Other jobs were running (load above half the CPUs): the timings are noisy; rerun on a quiet "
            "machine before relying on ratios within ~10%.**"
            if max(env["load_before"][0], env["load_after"][0]) > 0.5 * (env["cpu_count"] or 1)
            else ""
        ),
        "",
        f"Model: deep-supervision MLP, ReLU trunk 784 → 512 ×8 ({cfg['trunk_params'] / 1e6:.2f}M parameters), "
        f"K heads Linear(512, 10) + cross-entropy at depths round(8k/K); batch {cfg['batch_size']} of random data; "
        f"SGD. Telemetry sets: {', '.join(cfg['sets'])}.",
        "",
        f"Each path is timed as blocks of consecutive steps, round-robin with a rotating order, "
        f"{cfg['repeats']} rounds after a warm-up round; median over rounds of block time / steps. Blocks: "
        f"{cfg['steps']} steps for plain and every={n}, {cfg['short_steps']} steps for the other three. "
        f'"+ stats": the K autograd.grad calls followed by the same statistics from their gradients '
        f"(`GradientTelemetry.record`). Before timing, the gradients of the four ways agree (max relative "
        f"difference below 1e-3) and both telemetries' norms equal those of the K autograd.grad calls.",
        "",
        f"| K | plain (ms) | K × autograd.grad (ms) | + stats (ms) | ours every=1 (ms) | ours every={n} (ms) | "
        f"every=1 / K-grad | every=1 / (K-grad + stats) | every={n} / plain − 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        has = "kgrad_stats_s" in r  # records from before the reference with statistics lack it
        stats = f"{1e3 * r['kgrad_stats_s']:.1f}" if has else "–"
        vs_stats = f"{r['every1_vs_kgrad_stats']:.2f}" if has else "–"
        lines.append(
            f"| {r['k']} | {1e3 * r['plain_s']:.1f} | {1e3 * r['kgrad_s']:.1f} | {stats} | "
            f"{1e3 * r['every1_s']:.1f} | {1e3 * r['everyN_s']:.1f} | {r['every1_vs_kgrad']:.2f} | "
            f"{vs_stats} | {100 * r['everyN_overhead']:+.1f}% |"
        )
    acc = res["acceptance"]
    lines += [
        "",
        "Acceptance targets:",
        "",
        f"- every=1 costs no more than K separate autograd.grad calls: {_verdict(acc['every1_le_kgrad'])}",
        *(
            [
                f"- (the other reading) every=1 costs no more than K separate autograd.grad calls followed by "
                f"the same statistics: {_verdict(acc['every1_le_kgrad_stats'])}"
            ]
            if "every1_le_kgrad_stats" in acc
            else []
        ),
        f"- every={n} adds under 5% to a plain step: {_verdict(acc['everyN_under_5pct'])}",
        "",
        "A measured step costs (every=1 − plain) more than a plain step; amortised over N steps that is "
        "under 5% of a plain step from N = "
        + ", ".join(f"{math.ceil((r['every1_s'] - r['plain_s']) / (0.05 * r['plain_s']))} (K={r['k']})" for r in rows)
        + " on, not counting the cost of the skipped steps themselves.",
        "",
    ]
    return lines


def _verdict(per_k: dict[int, bool]) -> str:
    return ", ".join(f"K={k}: {'met' if ok else 'NOT met'}" for k, ok in per_k.items())


def _plot(rows: list[dict[str, Any]], every: int, path: Path) -> None:
    ks = [r["k"] for r in rows]
    fig, (ax,) = figure(1, width=6.4)
    for key, label in (
        ("plain_s", "plain step (sum, backward)"),
        ("kgrad_s", "K × autograd.grad"),
        ("kgrad_stats_s", "K × autograd.grad + same statistics"),
        ("every1_s", "layerwise.backward, telemetry every=1"),
        ("everyN_s", f"layerwise.backward, telemetry every={every}"),
    ):
        if all(key in r for r in rows):  # records from before the reference with statistics lack kgrad_stats_s
            ax.plot(ks, [1e3 * r[key] for r in rows], marker="o", label=label)
    ax.set(
        xlabel="K (loss terms)",
        ylabel="ms per training step",
        xticks=ks,
        ylim=(0, None),
        title="telemetry cost, deep-supervision MLP",
    )
    ax.legend(fontsize="small")
    save_png(fig, path, dpi=110)
