"""layerwise: training neural networks with layer-wise losses, in your own PyTorch loop.

Four capabilities, each a small piece that an ordinary PyTorch loop uses:

- **LocoProp** (:class:`LocoProp`): per-layer local losses matched to the activation, solved with a
  few local steps; a ``torch.optim.Optimizer``. :class:`KFAC` is the second-order reference.
- **Auxiliary layer-wise losses with learned weights**: :class:`Taps` capture intermediate outputs,
  ``layerwise.losses`` holds local losses, the weightings (:class:`Fixed`, :class:`GradNorm`,
  :class:`Usefulness`, :class:`Uncertainty`, :class:`Naive`) weigh the terms, and :func:`backward`
  replaces ``loss.backward()`` for a dict of terms (:func:`weighted_loss` hands the
  weighted total to a framework's backward instead).
- **Per-loss gradient telemetry** (:class:`GradientTelemetry`): each term's gradient norm, share and
  conflicts.
- **Layer-wise gradient decoupling** (:class:`DecoupledTrainer`): per-example auxiliary activations,
  blocks trained independently and in parallel.

The benchmark application and the ``layerwise`` command live in the separate package
``layerwise_bench``; importing ``layerwise`` loads none of it.
"""

from . import data, decoupled, locoprop, losses, metrics, models, optim, taps, telemetry, weighting
from ._backward import backward, weighted_loss
from ._distributed import CollectiveFailure
from .decoupled import DecoupledTrainer
from .locoprop import LocoProp
from .optim import KFAC, warmup_linear_decay
from .taps import Taps
from .telemetry import GradientTelemetry
from .weighting import Fixed, GradNorm, LayerSkip, Naive, Uncertainty, Usefulness, Weighting

__version__ = "0.6.0"

__all__ = [
    "CollectiveFailure",
    "KFAC",
    "DecoupledTrainer",
    "Fixed",
    "GradNorm",
    "GradientTelemetry",
    "LayerSkip",
    "LocoProp",
    "Naive",
    "Taps",
    "Uncertainty",
    "Usefulness",
    "Weighting",
    "__version__",
    "backward",
    "data",
    "decoupled",
    "locoprop",
    "losses",
    "metrics",
    "models",
    "optim",
    "taps",
    "telemetry",
    "warmup_linear_decay",
    "weighted_loss",
    "weighting",
]
