"""Tuned hyper-parameters: a versioned JSON file per benchmark and data set, with its sweep."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import CorruptFile, read_json
from ._method import Method

if TYPE_CHECKING:
    from ..workloads import Workload

__all__ = [
    "tuned_path",
    "load_tuned",
    "resolve_lrs",
    "apply_tuned_hparams",
    "override_hparams",
    "prepare_methods",
    "registry_methods",
]


def tuned_path(dataset: str, benchmark: str = "autoencoder") -> Path:
    """The tuned-values file shipped with the package for ``benchmark`` on ``dataset``."""
    return Path(__file__).resolve().parents[1] / "tuned" / f"{benchmark}-{dataset}.json"


def load_tuned(path: str | Path | None) -> dict[str, Any]:
    """Read a tuned-values file (``{}`` when ``path`` is None or the shipped file does not exist)."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        data = read_json(path)
    except CorruptFile as exc:
        first = str(exc).split(". ")[0].split("; ")[0]
        raise CorruptFile(
            f"tuned-values file {first}. Restore it (from a backup, version control, or by re-running "
            "'layerwise bench tune'), or pass another --tuned."
            + (" If you edited it on purpose, delete its 'sha256' entry." if "digest" in first else "")
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise ValueError(
            f"tuned-values file {str(path)!r} has no 'methods' table; regenerate it with 'layerwise bench tune'."
        )
    return data


def resolve_lrs(
    methods: list[Method], overrides: dict[str, float], tuned: dict[str, Any]
) -> dict[str, tuple[float, str]]:
    """Learning rate and its source per method: ``--lr`` override, then tuned file, then default."""
    out = {}
    for m in methods:
        if m.name in overrides:
            out[m.name] = (overrides[m.name], "command line")
        elif m.name in tuned.get("methods", {}):
            out[m.name] = (float(tuned["methods"][m.name]["lr"]), "tuned")
        else:
            out[m.name] = (m.default_lr, "default (untuned)")
    return out


def apply_tuned_hparams(method: Method, tuned: dict[str, Any]) -> Method:
    """``method`` with the hyper-parameters a ``--grid`` sweep chose (``tuned_hparams``), if any."""
    chosen = tuned.get("methods", {}).get(method.name, {}).get("tuned_hparams")
    return replace(method, hparams={**method.hparams, **chosen}) if chosen else method


def override_hparams(method: Method, values: dict[str, Any]) -> Method:
    """``method`` with some of its hyper-parameters replaced; a name it does not have is an error."""
    unknown = sorted(set(values) - set(method.hparams))
    if unknown:
        raise ValueError(
            f"--set {method.name}.{unknown[0]}=...: method {method.name!r} has no hyper-parameter {unknown[0]!r}; "
            f"its hyper-parameters are {sorted(method.hparams)}."
        )
    return replace(method, hparams={**method.hparams, **values}) if values else method


def registry_methods(names: list[str], task: Workload) -> list[Method]:
    """The registry's methods ``names`` as they run on this machine (the float32 form where bf16 is emulated),
    before any work: a method ``task`` refuses, or one whose optional package is missing, is an error."""
    from ._registry import get_method

    task.check_methods(names)
    methods = [get_method(name).for_machine() for name in names]
    for m in methods:
        m.check_available()
    return methods


def prepare_methods(
    names: list[str],
    dataset: str,
    tuned_file: str | Path | None = None,
    lr_overrides: dict[str, float] | None = None,
    hparam_overrides: dict[str, dict[str, Any]] | None = None,
    workload: str = "autoencoder",
) -> tuple[list[Method], dict[str, tuple[float, str]], Path, dict[str, Any]]:
    """The methods a run trains, before any work: looked up (unknown names fail), their packages checked,
    the tuned hyper-parameters and ``hparam_overrides`` applied; with each one's lr and its source, the
    tuned-values file and its contents. A workload other than the autoencoder refuses the methods it cannot
    run (with the reason), reads its own tuned-values file and centres untuned rates on its ``default_lrs``."""
    from ..workloads import get_workload

    task = get_workload(workload)
    methods = registry_methods(names, task)
    for flag, given in (("--lr", lr_overrides), ("--set", hparam_overrides)):
        unknown = sorted(set(given or {}) - set(names))
        if unknown:
            raise ValueError(
                f"{flag} names {unknown}, which are not among --methods {names}. "
                f"Add them to --methods or drop them from {flag}."
            )
    default = tuned_path(dataset) if workload == "autoencoder" else task.tuned_file()
    source = Path(tuned_file) if tuned_file is not None else default
    tuned = load_tuned(source)
    methods = [replace(m, default_lr=task.default_lrs.get(m.name, m.default_lr)) for m in methods]
    methods = [apply_tuned_hparams(m, tuned) for m in methods]
    methods = [override_hparams(m, (hparam_overrides or {}).get(m.name, {})) for m in methods]
    return methods, resolve_lrs(methods, dict(lr_overrides or {}), tuned), source, tuned
