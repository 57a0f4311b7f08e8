"""A benchmark's record directory: opening it (refuse to clobber a run, or resume one with the same config),
and the provenance lines every report starts with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._io import read_json
from ._run import RESULTS_FILE

__all__ = ["open_record", "provenance"]


def open_record(
    out: str | Path, benchmark: str, config: dict[str, Any], *, resume: bool, overwrite: bool, command: str
) -> tuple[Path, dict[str, Any]]:
    """``(out/results.json, results)``: the saved results when resuming (same ``config`` required; the
    command is appended to ``resumed_with``), else a fresh record with no runs.

    Raises:
        FileExistsError: ``out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
        ValueError: ``resume`` with a different configuration.
    """
    out = Path(out)
    path = out / RESULTS_FILE
    if path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"--out {str(out)!r} already holds a run ({RESULTS_FILE}). Pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out."
        )
    if resume and path.exists():
        results = read_json(path)
        if results.get("config") != config:
            raise ValueError(
                f"--resume: the run in {str(out)!r} used config {results.get('config')}, not "
                f"{config}. Resume with the same arguments or choose another --out."
            )
        results.setdefault("resumed_with", []).append(command)
        return path, results
    return path, {"benchmark": benchmark, "command": command, "config": config, "runs": {}}


def provenance(results: dict[str, Any], seeds: str) -> list[str]:
    """The report lines that say how a record was made: its command, the resumes, the machine and data."""
    env = results.get("environment", {})
    resumed = results.get("resumed_with") or []
    return [
        "Command:",
        "",
        f"    {results.get('command') or '(not recorded)'}",
        "",
        *([f"Resumed with: `{c}`" for c in resumed] + [""] if resumed else []),
        f"Measured on: {env.get('device', '?')}, {env.get('processor', '?')}, torch {env.get('torch', '?')}, "
        f"{env.get('torch_threads', '?')} thread(s). {results.get('train_examples', '?')} training examples, "
        f"{results.get('test_examples', '?')} test examples; {seeds}.",
    ]
