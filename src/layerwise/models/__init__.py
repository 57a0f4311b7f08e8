"""Reference models and their losses."""

from ._autoencoder import AUTOENCODER_WIDTHS, deep_autoencoder, sigmoid_cross_entropy
from ._init import glorot_uniform_

__all__ = ["AUTOENCODER_WIDTHS", "deep_autoencoder", "glorot_uniform_", "sigmoid_cross_entropy"]
