"""layerwise: training neural networks with layer-wise losses, in your own PyTorch loop."""

from . import bench, data, decoupled, locoprop, losses, metrics, models, optim, taps, telemetry, weighting
from ._backward import backward
from .locoprop import LocoProp
from .models import deep_autoencoder, sigmoid_cross_entropy
from .optim import KFAC, warmup_linear_decay

__version__ = "0.5.0"

__all__ = ["KFAC", "LocoProp", "__version__", "backward", "bench", "data", "decoupled", "deep_autoencoder", "locoprop", "losses", "metrics", "models", "optim",
           "taps", "telemetry", "weighting",
           "sigmoid_cross_entropy", "warmup_linear_decay"]
