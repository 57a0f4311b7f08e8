"""How similar two networks are: representations (linear CKA) and parameters."""

from ._cka import linear_cka
from ._distance import parameter_distance

__all__ = ["linear_cka", "parameter_distance"]
