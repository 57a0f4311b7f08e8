"""Benchmarks: the registry of methods, the deep-autoencoder harness, tuning and reports."""

from . import methods  # noqa: F401  (importing it registers the methods)
from ._rebuild import rebuild_report
from .autoencoder._equal_time import run_equal_time_benchmark
from .autoencoder._equal_time_report import (
    chosen_run,
    measured_epoch_time,
    summarize_equal_time,
    write_equal_time_report,
    write_equal_time_summary,
)
from .autoencoder._report import load_runs, summarize, write_report
from .autoencoder._run import run_autoencoder_benchmark
from .autoencoder._tune import tune_learning_rates
from .core._harness import (
    AutoencoderConfig,
    AutoencoderData,
    CheckpointMismatch,
    RunConfig,
    TrainingDiverged,
    evaluate,
    load_autoencoder_data,
    train_method,
)
from .core._method import LossFn, Method, standard_closure
from .core._record import RESULTS_FILE
from .core._registry import METHODS, get_method, method_names, register_method
from .core._tensorboard import TensorBoardSink
from .core._tuned import apply_tuned_hparams, load_tuned, resolve_lrs, tuned_path
from .deep_mlp._aux_bench import AuxConfig, run_aux_benchmark
from .deep_mlp._depth_bench import DepthConfig, run_depth_benchmark
from .deep_mlp._similarity import run_similarity_benchmark
from .deep_mlp._similarity import verdict as similarity_verdict
from .exits._bench import ExitsConfig, run_exits_benchmark
from .methods._muon import MuonAdam
from .systems._parallel import run_parallel_benchmark
from .systems._zstore import run_zstore_benchmark
from .timing._diagnose import run_locoprop_diagnosis, write_diagnosis_report
from .timing._steptime import run_method_steptime, run_steptime_benchmark, write_method_steptime_report
from .timing._telemetry import run_telemetry_benchmark
from .workloads import WORKLOADS, Workload, get_workload

__all__ = [
    "AuxConfig",
    "ExitsConfig",
    "run_aux_benchmark",
    "run_exits_benchmark",
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
    "run_locoprop_diagnosis",
    "run_method_steptime",
    "write_diagnosis_report",
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
