"""Per-loss-term gradient telemetry: norms, weighted shares, cosines and Gramians of K loss terms, every N steps."""

from ._grads import NonFiniteLoss, check_losses, check_params, term_gradients
from ._gramian import set_gramians
from ._sets import ParamSets, layer_sets, resolve_param_sets
from ._sinks import CSVSink, JSONLSink, Sink, TensorBoardSink
from ._snapshot import Snapshot
from ._telemetry import GradientTelemetry
from ._terms import TermGradients

__all__ = [
    "CSVSink",
    "GradientTelemetry",
    "NonFiniteLoss",
    "JSONLSink",
    "ParamSets",
    "Sink",
    "Snapshot",
    "TensorBoardSink",
    "check_losses",
    "check_params",
    "layer_sets",
    "resolve_param_sets",
    "set_gramians",
    "term_gradients",
    "TermGradients",
]
