"""Seed 000's three examples (``examples/``) with their learned weights, without the layer-wise loss, and with
fixed weights over a grid, 3 seeds each, at equal steps. Writes results.json, report.md and effect.png here.

    python benchmarks/seed-examples-cpu/run.py --data-dir ../shared/data

The MLP and the CNN train on MNIST (score: test accuracy, higher is better); the GRU forecasts a noisy sine wave
(score: MSE on 1,000 fresh sequences, lower is better). "Best fixed" is the grid weight with the best mean over
the three seeds, chosen on the scores it reports: an upper bound for a tuned fixed weight.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import platform
import statistics
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
SEEDS = (0, 1, 2)
# name: (module, keyword arguments, score key, higher is better, what learns the weights)
CASES: dict[str, tuple[str, dict[str, Any], str, bool, str]] = {
    "MLP, MSE to a teacher's layers 1 and 2 (MNIST, 784-128-128-10)": (
        "mlp_mse_targets",
        {"dataset": "mnist", "steps": 600},
        "test_acc",
        True,
        "Usefulness (one-step look-ahead)",
    ),
    "GRU, consistency of consecutive states (noisy sine)": (
        "rnn_consistency",
        {"steps": 200},
        "test_mse",
        False,
        "GradNorm (α 1.5)",
    ),
    "CNN, L1 sparsity per block (MNIST, 3 conv blocks)": (
        "cnn_sparsity",
        {"dataset": "mnist", "steps": 300},
        "test_acc",
        True,
        "Usefulness (cosine)",
    ),
}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(data_dir: str | None) -> dict[str, Any]:
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for case, (module, kw, key, _, _) in CASES.items():
        main = load(module).main
        extra = {"data_dir": data_dir} if "dataset" in kw else {}
        rows: dict[str, list[float]] = {}
        weights: list[dict[str, float]] = []
        for label, w in [("learned", None), ("none", 0.0), *[(f"fixed {g:g}", g) for g in GRID]]:
            rows[label] = []
            for seed in SEEDS:
                with contextlib.redirect_stdout(io.StringIO()):  # the examples print their weighting's summary
                    r = main(seed=seed, layer_weight=w, **kw, **extra)
                rows[label].append(float(r[key]))
                if w is None:
                    weights.append({k: round(float(v), 4) for k, v in r["weights"].items()})
                print(f"{module} {label} seed {seed}: {key} {r[key]:.4f}", file=sys.stderr, flush=True)
        out[case] = {"module": module, "options": kw, "score": key, "runs": rows, "learned_final_weights": weights}
    return out


def report(results: dict[str, Any], command: str) -> str:
    lines = [
        "# Seed 000's examples: learned layer-wise weights against none and against fixed weights",
        "",
        "Command (from the checkout root):",
        "",
        f"    {command}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread. Equal steps; "
        "each setting runs seeds 0, 1, 2. 'Best fixed' is the grid weight "
        f"({', '.join(f'{g:g}' for g in GRID)}) with the best mean over the seeds, chosen on the scores shown: an "
        "upper bound for a tuned fixed weight.",
        "",
        "| example | score | no layer loss | learned weights | best fixed (weight) | learned − best fixed | "
        "learned beats none in |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, r in results.items():
        _, _, key, higher, learner = CASES[case]
        runs = r["runs"]

        def fmt(v: list[float]) -> str:
            return f"{statistics.mean(v):.4f} [{min(v):.4f}, {max(v):.4f}]"

        fixed = {k: v for k, v in runs.items() if k.startswith("fixed")}
        best = (max if higher else min)(fixed, key=lambda k: statistics.mean(fixed[k]))
        diff = statistics.mean(runs["learned"]) - statistics.mean(fixed[best])
        wins = sum((a > b) if higher else (a < b) for a, b in zip(runs["learned"], runs["none"], strict=True))
        lines.append(
            f"| {case}; weights learned by {learner} | {key} ({'higher' if higher else 'lower'} is better) | "
            f"{fmt(runs['none'])} | {fmt(runs['learned'])} | {fmt(fixed[best])} ({best.split()[1]}) | {diff:+.4f} | "
            f"{wins} of {len(SEEDS)} seeds |"
        )
    lines += ["", "Every setting, mean over the seeds:", ""]
    for case, r in results.items():
        lines.append(f"- {case}: " + ", ".join(f"{k} {statistics.mean(v):.4f}" for k, v in r["runs"].items()))
    lines += ["", "Final learned weights, per seed:", ""]
    for case, r in results.items():
        lines.append(f"- {case}: " + "; ".join(str(w) for w in r["learned_final_weights"]))
    lines += ["", "![score per setting](effect.png)", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
    for ax, (case, r) in zip(axes, results.items(), strict=True):
        labels = list(r["runs"])
        for i, k in enumerate(labels):
            v = r["runs"][k]
            color = "C3" if k == "learned" else "C7" if k == "none" else "C0"
            ax.scatter([i] * len(v), v, color=color, s=14)
            ax.hlines(statistics.mean(v), i - 0.3, i + 0.3, color=color)
        ax.set_xticks(range(len(labels)), [k.replace("fixed ", "") for k in labels], rotation=45, fontsize=7)
        ax.set_title(case.split(",")[0] + f": {r['score']}", fontsize=9)
        ax.set_xlabel("setting (numbers: fixed weight)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST in DIR/mnist (default: $LAYERWISE_DATA_DIR)")
    parser.add_argument("--out", default=str(HERE), help="output folder (default: this record's)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/seed-examples-cpu/run.py" + (f" --data-dir {args.data_dir}" if args.data_dir else "")
    results = run(args.data_dir)
    (out / "results.json").write_text(json.dumps({"command": command, "cases": results}, indent=1) + "\n")
    plot(results, out / "effect.png")
    (out / "report.md").write_text(report(results, command))
    print(f"wrote {out / 'report.md'}")
