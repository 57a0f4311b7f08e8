"""The model and the methods of ``layerwise bench aux``: a deep plain tanh MLP with deep supervision.

Everything here is built from the public API only (:class:`~layerwise.taps.Taps`,
:class:`~layerwise.losses.LocalClassifier`, :mod:`layerwise.weighting`, :func:`layerwise.backward`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from layerwise.losses import LocalClassifier
from layerwise.taps import Taps
from layerwise.weighting import Fixed, GradNorm, Naive, Uncertainty, Usefulness, Weighting, halving, linear_decay

from ..core._entry import Entry, table

__all__ = ["AUX_METHODS", "AuxMethod", "AuxSetup", "AuxTerms", "DeepMLP", "build_setup", "tap_layers"]


#: the methods: each makes the weighting of the auxiliary terms (the report lists their summaries).
@dataclass(frozen=True)
class AuxTerms:
    """What a weighting is built from: the term names (main first, then the deepest head first, the order
    :func:`~layerwise.weighting.halving` expects), the trunk, the tapped hidden layers and the run's length."""

    terms: list[str]
    model: DeepMLP
    layers: list[int]
    trunk: list[nn.Parameter]
    total_steps: int


AuxMethod = Entry[Callable[[AuxTerms], Weighting]]


def _gradnorm(t: AuxTerms) -> Weighting:
    return GradNorm(t.terms, t.model.hidden[t.layers[0] - 1].parameters(), alpha=1.5, lr=0.025)


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
        "gradnorm", "GradNorm(terms, W, alpha=1.5, lr=0.025): W = the last hidden layer shared by every term", _gradnorm
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


class DeepMLP(nn.Module):
    """``depth`` hidden layers ``tanh(Linear)`` of ``width`` units, then a linear output; no residual, no
    normalisation, PyTorch's default initialisation. Hidden layer ``i`` (1-based) is ``hidden.{i-1}``."""

    def __init__(self, in_features: int, num_classes: int, depth: int, width: int) -> None:
        super().__init__()
        sizes = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.Tanh()) for a, b in zip(sizes, sizes[1:], strict=False)
        )
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


def tap_layers(depth: int, heads: int) -> list[int]:
    """Evenly spaced hidden layers (1-based) after which the auxiliary heads sit, e.g. 20, 3 -> [5, 10, 15]."""
    if heads < 0 or heads >= depth:
        raise ValueError(f"Invalid heads={heads} for depth={depth}: expected 0 <= heads < depth.")
    layers = sorted({round(depth * (i + 1) / (heads + 1)) for i in range(heads)})
    if len(layers) != heads or (layers and layers[0] < 1):
        raise ValueError(f"Cannot place {heads} distinct heads in {depth} layers; use fewer heads or more depth.")
    return layers


@dataclass
class AuxSetup:
    """One (method, seed) training setup: the model, its heads and taps, the weighting and the optimizer."""

    model: DeepMLP
    heads: nn.ModuleDict
    taps: Taps | None
    weighting: Weighting
    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    construction_warnings: list[str] = field(default_factory=list)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """``{"main": CE(model(x), y), "aux<layer>": head(tap, y), ...}``."""
        out = {"main": nn.functional.cross_entropy(self.model(x), y)}
        if self.taps is not None:
            for label, head in self.heads.items():
                out[label] = head(self.taps[label], y)
        return out

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


def build_setup(
    method: str,
    *,
    seed: int,
    depth: int,
    width: int,
    heads: int,
    in_features: int,
    num_classes: int,
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    total_steps: int,
    device: torch.device,
) -> AuxSetup:
    """The setup of ``method``; the trunk's initial weights depend on ``seed`` only (same for every method)."""
    if method not in AUX_METHODS:
        raise ValueError(f"Invalid method {method!r}. Expected one of {list(AUX_METHODS)}.")
    torch.manual_seed(seed)
    model = DeepMLP(in_features, num_classes, depth, width).to(device)
    layers = tap_layers(depth, heads) if method != "none" else []
    torch.manual_seed(10_000 + seed)
    head_mods = nn.ModuleDict({f"aux{i}": LocalClassifier(width, num_classes) for i in layers}).to(device)
    taps = Taps(model, {f"aux{i}": f"hidden.{i - 1}" for i in layers}) if layers else None
    # main first, then the deepest head first (the order halving() expects)
    terms = ["main"] + [f"aux{i}" for i in reversed(layers)]
    params = list(model.parameters()) + list(head_mods.parameters())
    trunk = list(model.hidden.parameters())
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        weighting = AUX_METHODS[method].make(AuxTerms(terms, model, layers, trunk, total_steps))
    caught = [str(w.message) for w in ws]
    weighting.to(device)
    opt = optimizer(params + list(weighting.parameters()))
    return AuxSetup(model, head_mods, taps, weighting, opt, params, caught)
