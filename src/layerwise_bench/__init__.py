"""Benchmarks: the registry of methods, the deep-autoencoder harness, tuning and reports."""

from . import _baselines, _locoprop, _locoprop_recipes, _today  # noqa: F401  (importing them registers the methods)
from ._aux_bench import AuxConfig, run_aux_benchmark
from ._depth_bench import DepthConfig, run_depth_benchmark
from ._equal_time import run_equal_time_benchmark
from ._equal_time_report import chosen_run, measured_epoch_time, write_equal_time_report
from ._equal_time_summary import summarize_equal_time, write_equal_time_summary
from ._harness import (
    AutoencoderConfig,
    AutoencoderData,
    CheckpointMismatch,
    RunConfig,
    TrainingDiverged,
    evaluate,
    load_autoencoder_data,
    train_method,
)
from ._method import LossFn, Method, standard_closure
from ._method_steptime import run_method_steptime, write_method_steptime_report
from ._muon import MuonAdam
from ._parallel import run_parallel_benchmark
from ._rebuild import rebuild_report
from ._record import RESULTS_FILE
from ._registry import METHODS, get_method, method_names, register_method
from ._report import load_runs, summarize, write_report
from ._run import run_autoencoder_benchmark
from ._similarity import run_similarity_benchmark
from ._similarity import verdict as similarity_verdict
from ._steptime import run_steptime_benchmark
from ._telemetry_bench import run_telemetry_benchmark
from ._tensorboard import TensorBoardSink
from ._tune import tune_learning_rates
from ._tuned import apply_tuned_hparams, load_tuned, resolve_lrs, tuned_path
from ._zstore_bench import run_zstore_benchmark
from .workloads import WORKLOADS, Workload, get_workload

__all__ = [
    "AuxConfig",
    "run_aux_benchmark",
    "DepthConfig",
    "run_depth_benchmark",
    "run_equal_time_benchmark",
    "write_equal_time_report",
    "chosen_run",
    "measured_epoch_time",
    "summarize_equal_time",
    "write_equal_time_summary",
    "run_similarity_benchmark",
    "similarity_verdict",
    "AutoencoderConfig",
    "AutoencoderData",
    "CheckpointMismatch",
    "RunConfig",
    "WORKLOADS",
    "Workload",
    "get_workload",
    "apply_tuned_hparams",
    "LossFn",
    "METHODS",
    "Method",
    "MuonAdam",
    "RESULTS_FILE",
    "TensorBoardSink",
    "TrainingDiverged",
    "evaluate",
    "get_method",
    "load_autoencoder_data",
    "load_runs",
    "load_tuned",
    "method_names",
    "register_method",
    "resolve_lrs",
    "run_autoencoder_benchmark",
    "run_steptime_benchmark",
    "run_method_steptime",
    "write_method_steptime_report",
    "run_parallel_benchmark",
    "run_telemetry_benchmark",
    "run_zstore_benchmark",
    "standard_closure",
    "summarize",
    "train_method",
    "tune_learning_rates",
    "tuned_path",
    "write_report",
    "rebuild_report",
]
