"""Local losses on intermediate activations. Any callable returning a scalar tensor works as well."""

from ._classifier import LocalClassifier
from ._consistency import Consistency
from ._sparsity import Sparsity
from ._target import MSETarget

__all__ = ["Consistency", "LocalClassifier", "MSETarget", "Sparsity"]
