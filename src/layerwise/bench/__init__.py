"""Benchmarks: the registry of methods, the deep-autoencoder harness, tuning and reports."""

from . import _baselines  # noqa: F401  (registers the seven baselines)
from ._harness import (AutoencoderConfig, AutoencoderData, CheckpointMismatch, TrainingDiverged, evaluate,
                       load_autoencoder_data, train_method)
from ._method import LossFn, Method, standard_closure
from ._registry import METHODS, get_method, method_names, register_method
from ._report import load_runs, summarize, write_report
from ._run import RESULTS_FILE, run_autoencoder_benchmark
from ._tensorboard import TensorBoardSink
from ._tune import tune_learning_rates
from ._tuned import load_tuned, resolve_lrs, tuned_path

__all__ = [
    "AutoencoderConfig", "AutoencoderData", "CheckpointMismatch", "LossFn", "METHODS", "Method",
    "RESULTS_FILE", "TensorBoardSink", "TrainingDiverged", "evaluate", "get_method", "load_autoencoder_data",
    "load_runs", "load_tuned", "method_names", "register_method", "resolve_lrs", "run_autoencoder_benchmark",
    "standard_closure", "summarize", "train_method", "tune_learning_rates", "tuned_path", "write_report",
]
