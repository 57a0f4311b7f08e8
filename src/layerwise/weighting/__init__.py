"""How loss terms are weighted: fixed, scheduled, or learned (each a small stateful ``nn.Module``)."""

from ._base import Weighting
from ._fixed import Fixed, halving, linear_decay, step_decay
from ._gradnorm import GradNorm
from ._layerskip import CURRICULA, LayerSkip
from ._naive import Naive
from ._own import SelfTrained
from ._uncertainty import Uncertainty
from ._usefulness import Usefulness

__all__ = [
    "CURRICULA",
    "Fixed",
    "GradNorm",
    "LayerSkip",
    "Naive",
    "SelfTrained",
    "Uncertainty",
    "Usefulness",
    "Weighting",
    "halving",
    "linear_decay",
    "step_decay",
]
