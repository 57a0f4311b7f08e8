"""Per-loss-term gradient telemetry: norms, weighted shares, cosines and Gramians of K loss terms, every N steps.

The per-term gradients come from :mod:`layerwise.terms`, the engine ``layerwise.backward`` and the weightings
share; its names are re-exported here for compatibility."""

from ..terms import NonFiniteLoss, TermGradients, check_losses, check_params, set_gramians, term_gradients
from ._sets import ParamSets, layer_sets, resolve_param_sets
from ._sinks import CSVSink, JSONLSink, LogSink, Sink, TensorBoardSink
from ._snapshot import Snapshot
from ._telemetry import GradientTelemetry

__all__ = [
    "CSVSink",
    "GradientTelemetry",
    "NonFiniteLoss",
    "JSONLSink",
    "LogSink",
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
