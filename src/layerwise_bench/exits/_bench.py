"""``layerwise bench exits``: deep supervision on a byte-level transformer LM. An early-exit loss after every block
goes through the model's own final norm and head (LayerSkip's design, Elhoushi et al. 2024), tapped with
:class:`~layerwise.taps.Taps`; each weighting of the terms trains the same model from the same init with AdamW.

Every (weighting, seed) is one run of ``epochs`` epochs (equal steps); the run is also evaluated, off the clock, the
moment its training time passes ``B``, the training time of the same seed's run without exits (equal wall-clock:
the learning rate is constant, so that point is where a run stopped at ``B`` would be; LayerSkip's curriculum is
scheduled on the whole run's steps, so at ``B`` it is where that schedule had got to). Public API only."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from layerwise import backward
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry, NonFiniteLoss
from layerwise.weighting import Fixed, GradNorm, LayerSkip, Uncertainty, Usefulness, Weighting

from ..core._entry import Entry, table
from ..core._harness import progress_bar, timed
from ..core._record import Record, check_names
from ..workloads import ByteLM, byte_cross_entropy, corpus_windows
from ._report import write_exits_report

__all__ = ["EXIT_METHODS", "ExitsConfig", "run_exits_benchmark"]


@dataclass(frozen=True)
class ExitsConfig:
    """Everything that decides the numbers of ``layerwise bench exits`` (checked on ``--resume``)."""

    depth: int = 8
    width: int = 48
    heads: int = 4
    context: int = 32
    subset: int | None = 8192
    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    eval_windows: int = 512
    evals: int = 8
    telemetry_every: int = 50
    spike: float = 1.5


@dataclass
class ExitsData:
    """Training and validation windows: inputs and next-byte targets."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor


def load_exits_data(cfg: ExitsConfig, device: torch.device) -> ExitsData:
    """The standard library's sources as ``lm-bytes`` reads them (its split by file and its fixed orders that mix the
    files), in windows of ``context + 1`` bytes."""
    train, val = corpus_windows(cfg.context + 1, cfg.subset, cfg.eval_windows)
    train, val = train.to(device), val.to(device)
    return ExitsData(train[:, :-1], train[:, 1:], val[:, :-1], val[:, 1:])


class ExitsTrial:
    """One (weighting, seed): the model, its exits (``exit1`` after the first block ... ``main`` the output, in
    that order), the weighting of the terms and AdamW on the model and the weighting's own parameters."""

    def __init__(self, method: str, seed: int, cfg: ExitsConfig, data: ExitsData, total_steps: int) -> None:
        device = data.train_x.device
        torch.manual_seed(seed)
        self.model = ByteLM(cfg.width, cfg.depth, cfg.heads, cfg.context).to(device)
        self.cfg, self.data, self.total_steps = cfg, data, total_steps
        blocks = self.model.blocks
        self.exit_names = [f"exit{i + 1}" for i in range(cfg.depth - 1)]  # evaluated for every method, none too
        self.exits = self.exit_names if method != "none" else []  # the trained terms
        self.taps = self._tap() if self.exits else None
        self.terms = [*self.exits, "main"]
        first: Any = blocks[0]
        self.shared = list(first.fc2.parameters())  # the last layer every term passes through
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.weighting = EXIT_METHODS[method].make(self)
        self.weighting.to(device)
        self.params = list(self.model.parameters())
        groups: list[dict[str, Any]] = [{"params": self.params}]
        groups.append({"params": list(self.weighting.parameters()), "weight_decay": 0.0})  # no decay on its weights
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
        )
        trunk = {f"block{i + 1}": b for i, b in enumerate(blocks)}
        self.telemetry = GradientTelemetry(trunk, keep_history=False) if self.exits else None
        self.entry: dict[str, Any] = {
            "method": method,
            "seed": seed,
            "status": "running",
            "terms": self.terms,
            "records": [],
            "spikes": [],
            "telemetry": [],
            "construction_warnings": [str(w.message) for w in caught],
        }

    def _tap(self) -> Taps:
        return Taps(self.model, {e: f"blocks.{i}" for i, e in enumerate(self.exit_names)})

    def _exit(self, h: Tensor) -> Tensor:
        return self.model.head(self.model.norm(h))  # the shared final norm and head

    def losses(self, x: Tensor, y: Tensor, on: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Every term on ``(x, y)``; terms not in ``on`` (LayerSkip's curriculum) are 0 and not computed."""
        out = {"main": byte_cross_entropy(self.model(x), y)}
        for e in self.exits:
            assert self.taps is not None
            skip = on is not None and e not in on
            out[e] = torch.zeros((), device=x.device) if skip else byte_cross_entropy(self._exit(self.taps[e]), y)
        return {t: out[t] for t in self.terms}

    def step(self, x: Tensor, y: Tensor) -> float:
        on = self.weighting.enabled() if isinstance(self.weighting, LayerSkip) else None
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.losses(x, y, on)
        backward(losses, self.weighting, params=self.params)
        self.optimizer.step()
        return float(losses["main"].detach())

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Validation loss of the output and of every exit (nats per byte)."""
        sums = dict.fromkeys(["main", *self.exit_names], 0.0)
        taps = self.taps or self._tap()
        x, y = self.data.val_x, self.data.val_y
        try:
            for i in range(0, len(x), 256):
                n = len(x[i : i + 256])
                sums["main"] += float(byte_cross_entropy(self.model(x[i : i + 256]), y[i : i + 256])) * n
                for e in self.exit_names:
                    sums[e] += float(byte_cross_entropy(self._exit(taps[e]), y[i : i + 256])) * n
        finally:
            if taps is not self.taps:
                taps.remove()
        return {"val_loss": sums.pop("main") / len(x), "exit_val_loss": {k: v / len(x) for k, v in sums.items()}}

    def measure(self, x: Tensor, y: Tensor, step: int) -> None:
        """Cosines of each exit's gradient with the output's, per block (off the clock)."""
        if self.telemetry is None:
            return
        snap = self.telemetry.measure(self.losses(x, y), weights=self.weighting.current or None)
        if snap is None:
            return
        k = snap.terms.index("main")
        cos = {s: {t: snap.cosines[s][k][j] for j, t in enumerate(snap.terms) if t != "main"} for s in snap.sets}
        self.entry["telemetry"].append({"step": step, "cosine_with_main": cos})

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()
        if self.telemetry is not None:
            self.telemetry.close()


def _train(trial: ExitsTrial, cfg: ExitsConfig, seed: int, budget: float | None, save: Callable[[], None]) -> None:
    """Train ``trial`` for ``cfg.epochs`` epochs, evaluating ``cfg.evals`` times and once at ``budget`` seconds of
    training, all off the clock; a step's main loss above ``cfg.spike`` times the median of the previous 50 is
    a spike; a non-finite loss ends the run as diverged."""
    data, entry = trial.data, trial.entry
    n, bs = len(data.train_x), cfg.batch_size
    per_epoch = math.ceil(n / bs)
    total = cfg.epochs * per_epoch
    evals = {math.ceil(total * (i + 1) / cfg.evals) for i in range(cfg.evals)}
    gen, clock, step = torch.Generator().manual_seed(seed), 0.0, 0
    recent: list[float] = []

    def evaluate() -> dict[str, Any]:
        return {"step": step, "epoch": step / per_epoch, "train_time": clock, **trial.evaluate()}

    try:
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=gen).to(data.train_x.device)
            for b in range(per_epoch):
                idx = order[b * bs : (b + 1) * bs]
                x, y = data.train_x[idx], data.train_y[idx]
                seconds, loss = timed(lambda: trial.step(x, y), x.device)  # noqa: B023 (called at once)
                clock += seconds
                step += 1
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the main training loss is {loss}")
                if len(recent) == 50 and loss > cfg.spike * statistics.median(recent):
                    entry["spikes"].append({"step": step, "loss": loss, "median": statistics.median(recent)})
                recent = [*recent[-49:], loss]
                if budget is not None and "at_budget" not in entry and clock >= budget:
                    entry["at_budget"] = evaluate()
                if step in evals:
                    entry["records"].append({**evaluate(), "weights": trial.weighting.current})
                    save()
                if cfg.telemetry_every and step % cfg.telemetry_every == 0:
                    trial.measure(x, y, step)
        entry.setdefault("at_budget", {**entry["records"][-1], "before_budget": budget is not None})
        entry.update(status="complete", summary=trial.weighting.summary(), final_weights=trial.weighting.current)
    except (FloatingPointError, NonFiniteLoss) as exc:
        entry.update(status="diverged", error=f"step {step}: {exc}", weights_at_divergence=trial.weighting.current)
    finally:
        trial.close()


#: the weightings: each makes the weighting of the trial's terms (the report lists their summaries).
ExitMethod = Entry[Callable[[ExitsTrial], Weighting]]


def _fixed(w: float) -> ExitMethod:
    return ExitMethod(
        f"fixed-{w:g}",
        f"Fixed: every exit weight {w:g}, the output 1",
        lambda t: Fixed({**dict.fromkeys(t.exits, w), "main": 1.0}),
    )


EXIT_METHODS: dict[str, ExitMethod] = table(
    ExitMethod(
        "none",
        "no exits: the output's loss only (plain training; its time is the budget B)",
        lambda t: Fixed.equal(["main"]),
    ),
    ExitMethod("equal", "Fixed.equal: every exit and the output weight 1", lambda t: Fixed.equal(t.terms)),
    _fixed(0.03),
    _fixed(0.1),
    _fixed(0.3),
    ExitMethod(
        "layerskip",
        "LayerSkip(terms, steps, e_scale=1, curriculum='gradual'): scales growing with depth, exits switched on "
        "deepest first over the first half, sum 1; exits switched off are not computed",
        lambda t: LayerSkip(t.terms, t.total_steps),
    ),
    ExitMethod(
        "layerskip-rotational",
        "LayerSkip(..., curriculum='rotational', rotation=2): every second exit in turn",
        lambda t: LayerSkip(t.terms, t.total_steps, curriculum="rotational"),
    ),
    ExitMethod(
        "uncertainty",
        "Uncertainty(terms): Kendall et al. log-variances trained by AdamW",
        lambda t: Uncertainty(t.terms),
    ),
    ExitMethod(
        "gradnorm",
        "GradNorm(terms, W, alpha=1.5, lr=0.025): W = the first block's fc2, the last layer every term shares",
        lambda t: GradNorm(t.terms, t.shared, alpha=1.5, lr=0.025),
    ),
    ExitMethod(
        "usefulness-cosine",
        "Usefulness(terms, W, main='main', mode='cosine'): a running mean of max(0, cos(g_main, g_exit)) on W (the "
        "measured gradient conflict)",
        lambda t: Usefulness(t.terms, t.shared, main="main", mode="cosine"),
    ),
)


def run_exits_benchmark(
    out: str | Path,
    *,
    methods: Sequence[str] = tuple(EXIT_METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    cfg: ExitsConfig | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Train every weighting with every seed, seed-major, ``none`` first (its time is that seed's budget); keep
    ``out/results.json`` current (``resume`` keeps every finished run); write ``report.md`` and plots.

    Raises:
        ValueError: unknown method, no seed, a depth below 2, or ``resume`` with a different configuration.
        FileExistsError: ``out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    cfg = cfg or ExitsConfig()
    check_names("methods", methods, EXIT_METHODS)
    if not seeds:
        raise ValueError("Invalid seeds: expected at least one seed, e.g. 0,1,2.")
    if cfg.depth < 2:
        raise ValueError(f"Invalid depth={cfg.depth}: exits need at least 2 blocks (an exit after the first).")
    device = torch.device(device)
    record = Record(out, "exits", asdict(cfg), command=command, device=device, resume=resume, overwrite=overwrite)
    order = ["none", *(m for m in methods if m != "none")]
    results = record.results
    every = [*results.get("methods", []), *(m for m in order if m not in results.get("methods", []))]
    results.update(
        methods=every,
        seeds=sorted(set(results.get("seeds", [])) | set(seeds)),
        descriptions={m: EXIT_METHODS[m].summary for m in every},
    )
    data = load_exits_data(cfg, device)
    results["train_examples"], results["test_examples"] = len(data.train_x), len(data.val_x)
    total = cfg.epochs * math.ceil(len(data.train_x) / cfg.batch_size)
    bar = progress_bar(len(order) * len(seeds), "exits", progress)
    for seed in seeds:
        for method in order:
            key = f"{method}/{seed}"
            if not record.finished(key):
                none = record.runs.get(f"none/{seed}", {})
                done = method != "none" and none.get("status") == "complete"
                budget = none["records"][-1]["train_time"] if done else None
                trial = ExitsTrial(method, seed, cfg, data, total)
                record.runs[key] = trial.entry
                _train(trial, cfg, seed, budget, record.save)
                record.save()
            bar.update(1)
    bar.close()
    return record.finish(write_exits_report)
