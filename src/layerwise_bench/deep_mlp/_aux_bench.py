"""``layerwise bench aux``: weightings of deep-supervision losses on a deep plain tanh MLP, several seeds.

Built on the public API only (:class:`~layerwise.taps.Taps`, :class:`~layerwise.losses.LocalClassifier`,
:mod:`layerwise.weighting`, :func:`layerwise.backward`); ``results.json`` is rewritten after every epoch.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from layerwise import backward
from layerwise.losses import LocalClassifier
from layerwise.taps import Taps
from layerwise.telemetry import NonFiniteLoss
from layerwise.weighting import Fixed, GradNorm, Naive, Uncertainty, Usefulness, Weighting, halving, linear_decay

from ..core._entry import Entry, table
from ..core._record import Record, check_names
from ._aux_report import write_aux_report
from ._depth_model import build_mlp
from ._loop import MLPData, Trial, evaluate, load_data, supervised_losses, train_into

__all__ = ["AUX_METHODS", "AuxConfig", "AuxTrial", "run_aux_benchmark", "tap_layers"]


@dataclass(frozen=True)
class AuxConfig:
    """Everything that decides the numbers of ``layerwise bench aux`` (checked on ``--resume``)."""

    dataset: str = "mnist"
    depth: int = 20
    width: int = 256
    heads: int = 3
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    subset: int | None = None
    target_acc: float = 0.9

    def make_optimizer(self, params: list[Any]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        raise ValueError(f"Invalid optimizer={self.optimizer!r}. Expected 'sgd' or 'adam'.")


def tap_layers(depth: int, heads: int) -> list[int]:
    """Evenly spaced hidden layers (1-based) after which the auxiliary heads sit, e.g. 20, 3 -> [5, 10, 15]."""
    if heads < 0 or heads >= depth:
        raise ValueError(f"Invalid heads={heads} for depth={depth}: expected 0 <= heads < depth.")
    layers = sorted({round(depth * (i + 1) / (heads + 1)) for i in range(heads)})
    if len(layers) != heads or (layers and layers[0] < 1):
        raise ValueError(f"Cannot place {heads} distinct heads in {depth} layers; use fewer heads or more depth.")
    return layers


def _trace(epoch: int, losses: list[dict[str, float]], weights: list[dict[str, float]]) -> list[dict[str, Any]]:
    """About 12 evenly spaced steps of the epoch that diverged: loss values and weights."""
    stride = max(1, math.ceil(len(losses) / 12))
    keep = sorted(set(range(0, len(losses), stride)) | ({len(losses) - 1} if losses else set()))
    return [
        {"epoch": epoch, "step": i + 1, "losses": losses[i], "weights": weights[i] if i < len(weights) else {}}
        for i in keep
    ]


class AuxTrial(Trial):
    """One (method, seed): the plain tanh MLP of :func:`~._depth_model.build_mlp` (default init, depending on the
    seed only), ``LocalClassifier`` heads tapped after evenly spaced hidden layers, the method's weighting of the
    terms (``main``, then the deepest head first) and the optimizer."""

    def __init__(self, method: str, seed: int, cfg: AuxConfig, data: MLPData) -> None:
        classes, device = int(data.train_y.max()) + 1, data.train_x.device
        self.total_steps = cfg.epochs * math.ceil(len(data.train_x) / cfg.batch_size)
        torch.manual_seed(seed)
        self.model = build_mlp(data.train_x.shape[1], classes, cfg.depth, cfg.width, "tanh").to(device)
        self.layers = tap_layers(cfg.depth, cfg.heads) if method != "none" else []
        torch.manual_seed(10_000 + seed)
        self.heads = nn.ModuleDict({f"aux{i}": LocalClassifier(cfg.width, classes) for i in self.layers}).to(device)
        self.taps = Taps(self.model, {f"aux{i}": str(2 * i - 1) for i in self.layers}) if self.layers else None
        self.terms = ["main"] + [f"aux{i}" for i in reversed(self.layers)]  # the order halving() expects
        self.params = [*self.model.parameters(), *self.heads.parameters()]
        self.trunk = list(self.model[:-1].parameters())  # every hidden layer
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.weighting = AUX_METHODS[method].make(self)
        self.weighting.to(device)
        self.optimizer = cfg.make_optimizer(self.params + list(self.weighting.parameters()))
        self.data = data
        self.losses: dict[str, Tensor] = {}
        self.step_losses: list[dict[str, float]] = []  # this epoch's, one row per step (a divergence's trace)
        self.step_weights: list[dict[str, float]] = []
        self.entry = {
            "method": method,
            "seed": seed,
            "status": "running",
            "terms": list(self.weighting.terms),
            "records": [],
            "weights": [],
            "useless_warnings": [],
            "construction_warnings": [str(w.message) for w in caught],
        }

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        self.losses = supervised_losses(self.model, self.taps, self.heads, x, y)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backward(self.losses, self.weighting, params=self.params)
        epoch, step = len(self.entry["records"]) + 1, len(self.step_losses) + 1
        for w in caught:
            self.entry["useless_warnings"].append({"epoch": epoch, "step": step, "message": str(w.message)})
        self.optimizer.step()
        self.step_weights.append(self.weighting.current)
        self.step_losses.append({k: float(v.detach()) for k, v in self.losses.items()})
        return sum(self.step_losses[-1].values())

    def end_epoch(self, epoch: int, objective: float) -> dict[str, Any]:
        rows, n = self.step_losses, len(self.step_losses)
        mean = {k: sum(r[k] for r in rows) / n for k in rows[0]}
        weights = self.step_weights
        self.entry["weights"].append(
            {k: statistics.fmean(r[k] for r in weights) for k in weights[0]} if weights else {}
        )
        self.step_losses, self.step_weights = [], []
        return {
            "test_acc": evaluate(self.model, self.data.test_x, self.data.test_y)[1],
            "train_main_loss": mean["main"],
            "aux_losses": {k: v for k, v in mean.items() if k != "main"},
        }

    def complete(self) -> None:
        w = self.weighting
        self.entry.update(final_weights=w.current, summary=w.summary(), useless_terms=w.useless_terms())

    def diverged(self, exc: Exception, epoch: int, step: int) -> dict[str, Any] | None:
        if not isinstance(exc, NonFiniteLoss):
            return None
        return {
            "error": f"epoch {epoch}, step {step}: {exc}",
            "at_divergence": {
                "losses": {k: float(v.detach()) for k, v in self.losses.items()},
                "weights": self.weighting.current,
            },
            "trace": _trace(epoch, self.step_losses, self.step_weights),
        }

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


#: the methods: each makes the weighting of the auxiliary terms from the trial (the report lists their summaries).
AuxMethod = Entry[Callable[[AuxTrial], Weighting]]

AUX_METHODS: dict[str, AuxMethod] = table(
    AuxMethod(
        "none",
        "main loss only (no auxiliary heads): plain backprop through the deep net",
        lambda t: Fixed.equal(["main"]),
    ),
    AuxMethod("equal", "Fixed.equal: every term weight 1", lambda t: Fixed.equal(t.terms)),
    AuxMethod(
        "halving",
        "Fixed(halving(terms)): nnU-Net's 1/2^i weights, main first then the deepest head, sum 1",
        lambda t: Fixed(halving(t.terms)),
    ),
    AuxMethod(
        "decay",
        "Fixed.equal(terms, main='main', schedule=linear_decay(total steps)): auxiliary weights fade 1 -> 0 "
        "(DSN-style)",
        lambda t: Fixed.equal(t.terms, main="main", schedule=linear_decay(t.total_steps)),
    ),
    AuxMethod(
        "naive",
        "Naive(terms, main='main'): auxiliary weights trained by the model's optimizer on the total "
        "(ablation; collapses)",
        lambda t: Naive(t.terms, main="main"),
    ),
    AuxMethod(
        "uncertainty",
        "Uncertainty(terms): Kendall et al. log-variances trained by the model's optimizer",
        lambda t: Uncertainty(t.terms),
    ),
    AuxMethod(
        "gradnorm",
        "GradNorm(terms, W, alpha=1.5, lr=0.025): W = the last hidden layer shared by every term",
        lambda t: GradNorm(t.terms, t.model[2 * t.layers[0] - 2].parameters(), alpha=1.5, lr=0.025),
    ),
    AuxMethod(
        "usefulness-lookahead",
        "Usefulness(terms, trunk, main='main', mode='lookahead', lr=0.01): one-step look-ahead (OL-AUX)",
        lambda t: Usefulness(t.terms, t.trunk, main="main", mode="lookahead", lr=0.01),
    ),
    AuxMethod(
        "usefulness-cosine",
        "Usefulness(terms, trunk, main='main', mode='cosine'): running mean of max(0, cos(g_main, g_aux))",
        lambda t: Usefulness(t.terms, t.trunk, main="main", mode="cosine", lr=0.01),
    ),
    AuxMethod(
        "usefulness-lookahead-sum",
        "Usefulness(terms, trunk, main='main', mode='lookahead', lr=0.01, total=heads): the look-ahead "
        "redistributing a fixed auxiliary budget (sum = that of equal)",
        lambda t: Usefulness(t.terms, t.trunk, main="main", mode="lookahead", lr=0.01, total=float(len(t.layers))),
    ),
)


def run_aux_benchmark(
    out: str | Path,
    *,
    methods: Sequence[str] = tuple(AUX_METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    cfg: AuxConfig | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Train every method with every seed, seed-major; keep ``out/results.json`` current (``resume`` keeps every
    finished run); write ``report.md`` and plots.

    Raises:
        ValueError: unknown method, no seed, or ``resume`` with a different configuration.
        FileExistsError: ``out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    cfg = cfg or AuxConfig()
    check_names("methods", methods, AUX_METHODS)
    if not seeds:
        raise ValueError("Invalid seeds: expected at least one seed, e.g. 0,1,2.")
    device = torch.device(device)
    record = Record(out, "aux", asdict(cfg), command=command, device=device, resume=resume, overwrite=overwrite)
    results = record.results
    # a resumed run may add methods: the report covers every method the directory holds
    every = [*results.get("methods", []), *[m for m in methods if m not in results.get("methods", [])]]
    results.update(
        methods=every,
        seeds=sorted(set(results.get("seeds", [])) | set(seeds)),
        descriptions={m: AUX_METHODS[m].summary for m in every if m in AUX_METHODS},
    )
    data = load_data(cfg, data_dir, device, download)
    results["train_examples"], results["test_examples"] = len(data.train_x), len(data.test_x)
    for seed in seeds:
        for method in methods:
            train_into(record, f"{method}/{seed}", lambda: AuxTrial(method, seed, cfg, data), data, cfg, seed, progress)
    return record.finish(write_aux_report)
