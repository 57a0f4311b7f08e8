"""Where layer-wise losses attach: forward hooks on named submodules."""

from ._taps import TapRef, Taps, first_tensor

__all__ = ["TapRef", "Taps", "first_tensor"]
