"""A benchmark's run record: ``out/results.json`` (``benchmark``, ``command``, ``config``, ``environment``, ``runs``)
from which ``out/report.md`` and the plots are rebuilt; an existing record is continued (``resume``, same
``config``) or replaced (``overwrite``), never clobbered."""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write_bytes, atomic_write_json, read_json
from ._machine import describe_machine, distinct_machines, machine, same_machine

__all__ = [
    "RESULTS_FILE",
    "Record",
    "check_names",
    "command_line",
    "environment",
    "fmt",
    "machine_lines",
    "machines_of",
    "md_table",
    "provenance",
    "save_report",
    "spread",
    "stats",
]

RESULTS_FILE = "results.json"
FINAL = ("complete", "diverged")


def environment(device: torch.device | str) -> dict[str, Any]:
    """Where the numbers were measured: :func:`~layerwise_bench.core._machine.machine` and the keys records kept
    before it (python, torch, platform, processor, torch_threads, device; gpu on CUDA)."""
    return {**machine(device), "platform": platform.platform(), "processor": platform.processor() or platform.machine()}


def command_line(argv: Sequence[str], prog: str = "layerwise", cwd: str | Path | None = None) -> str:
    """The command a record keeps: ``prog`` and ``argv`` quoted for a shell, with every absolute path under
    ``cwd`` (default: the working directory), alone or as ``--flag=PATH``, written relative to it, so that
    the command reads the same from any checkout."""
    root = Path(cwd if cwd is not None else os.getcwd()).resolve()

    def rel(arg: str) -> str:
        flag, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if not value.startswith("/"):
            return arg
        try:
            inside = Path(os.path.normpath(value)).relative_to(root)
        except ValueError:
            try:  # the working directory reached through a link: compare resolved paths too
                inside = Path(value).resolve().relative_to(root)
            except (ValueError, OSError):
                return arg
        return f"{flag}{eq}{inside.as_posix()}"

    return " ".join([prog, *(shlex.quote(rel(a)) for a in argv)])


def check_names(what: str, given: Sequence[str], valid: Iterable[str]) -> None:
    """Raise ValueError naming the unknown entries of ``given`` (or its emptiness) and the valid ones."""
    valid = list(valid)
    bad = [n for n in given if n not in valid]
    if bad or not given:
        raise ValueError(f"Invalid {what} {bad or list(given)}: expected some of {valid}.")


def _check_writable(out: Path) -> None:
    """Create ``out`` and write a probe file in it, so an unwritable ``--out`` fails before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".layerwise-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"--out {str(out)!r} is not a writable directory ({exc.strerror or exc}). Choose another --out, "
            "or fix its permissions / free space; nothing was run."
        ) from None


class Record:
    """Open ``out`` for ``benchmark`` run with ``config``: PermissionError if it cannot be written, FileExistsError if
    it holds a run (without ``resume`` or ``overwrite``), ValueError when resuming another configuration."""

    def __init__(
        self,
        out: str | Path,
        benchmark: str,
        config: dict[str, Any],
        *,
        command: str,
        device: torch.device | str = "cpu",
        resume: bool = False,
        overwrite: bool = False,
        runs_key: str | None = "runs",
    ) -> None:
        self.out = Path(out)
        self.runs_key = runs_key
        _check_writable(self.out)
        self.path = self.out / RESULTS_FILE
        if self.path.exists() and not (resume or overwrite):
            raise FileExistsError(
                f"--out {str(self.out)!r} already holds a run ({RESULTS_FILE}). Pass --resume to "
                "continue it, --overwrite to replace it, or choose another --out."
            )
        if resume and self.path.exists():
            self.results: dict[str, Any] = read_json(self.path)
            if self.results.get("config") != config:
                raise ValueError(
                    f"--resume: the run in {str(self.out)!r} used config {self.results.get('config')}, not "
                    f"{config}. Resume with the same arguments or choose another --out."
                )
            self.results.setdefault("resumed_with", []).append(command)
            here = environment(device)
            known = [self.results.get("environment") or {}, *(self.results.get("resumed_on") or [])]
            if "environment" not in self.results:
                self.results["environment"] = here
            elif not any(same_machine(here, env) for env in known):
                self.results.setdefault("resumed_on", []).append(here)
        else:
            self.results = {
                "benchmark": benchmark,
                "command": command,
                "config": config,
                "environment": environment(device),
            }
        if runs_key is not None:
            self.results.setdefault(runs_key, {})

    @property
    def runs(self) -> dict[str, Any]:
        """The record's runs by key (``runs_key``: "runs"; the autoencoder's records say "methods")."""
        if self.runs_key is None:
            raise TypeError(f"the {self.results['benchmark']} record keeps no runs table (runs_key=None)")
        return self.results[self.runs_key]

    def finished(self, key: str) -> bool:
        """Whether run ``key`` ended (complete or diverged) in a previous call: a resumed run skips it."""
        return self.runs.get(key, {}).get("status") in FINAL

    def save_run(self, key: str, entry: dict[str, Any]) -> None:
        """Set run ``key`` and save the record."""
        self.runs[key] = entry
        self.save()

    def save(self) -> None:
        """Write ``results.json`` atomically."""
        atomic_write_json(self.results, self.path)

    def finish(self, write: Callable[[dict[str, Any], Path], object]) -> dict[str, Any]:
        """Save the record, write its report with ``write(results, out)``, return the results."""
        self.save()
        write(self.results, self.out)
        return self.results


def save_report(out: str | Path, lines: Sequence[str]) -> Path:
    """Write ``out/report.md`` atomically, ending with the hand-written ``out/notes.md`` if there is one
    (notes are kept across reruns)."""
    out = Path(out)
    lines = list(lines)
    notes = out / "notes.md"
    if notes.is_file():
        raw = notes.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        if "\ufffd" in text and "\ufffd".encode() not in raw:
            warnings.warn(
                f"{str(notes)!r} is not valid UTF-8 (damaged, or saved in another encoding); the report shows "
                "the bytes it cannot read as U+FFFD. Save it as UTF-8 and run 'layerwise report' again.",
                UserWarning,
                stacklevel=2,
            )
        lines += ["", "## Notes", "", text.strip()]
    path = out / "report.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def _times(n: int) -> str:
    return f" {n} times" if n > 1 else ""


def machines_of(records: dict[str, Any] | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct machines one record, or several read together, were measured on: each record's
    ``environment`` and the ``resumed_on`` machines it was continued on, each machine once, in order."""
    recs = [records] if isinstance(records, dict) else list(records)
    return distinct_machines([env for r in recs for env in [r.get("environment") or {}, *(r.get("resumed_on") or [])]])


def machine_lines(records: dict[str, Any] | Sequence[dict[str, Any]]) -> list[str]:
    """The report lines naming the machine of one record, or of several read together: "Machine: ...", and
    a warning naming every machine when the runs were made on more than one."""
    found = machines_of(records)
    if len(found) <= 1:
        return [f"Machine: {describe_machine(found[0] if found else {})}."]
    return [
        f"**Warning: these runs were made on {len(found)} different machines; their times are not comparable "
        "with each other:**",
        "",
        *[f"- machine {i}: {describe_machine(env)}" for i, env in enumerate(found, 1)],
    ]


def provenance(results: dict[str, Any], seeds: str) -> list[str]:
    """The report lines that say how a record was made: its command, the resumes, the machine and data."""
    env = results.get("environment", {})
    resumed = results.get("resumed_with") or []
    return [
        "Command:",
        "",
        f"    {results.get('command') or '(not recorded)'}",
        "",
        *([f"Resumed{_times(resumed.count(c))} with: `{c}`" for c in dict.fromkeys(resumed)] + [""] if resumed else []),
        *machine_lines(results),
        "",
        f"Measured on: {env.get('device', '?')}, {env.get('processor', '?')}, torch {env.get('torch', '?')}, "
        f"{env.get('torch_threads', '?')} thread(s). {results.get('train_examples', '?')} training examples, "
        f"{results.get('test_examples', '?')} test examples; {seeds}.",
    ]


def md_table(head: Sequence[object], rows: Iterable[Sequence[object]] = ()) -> list[str]:
    """A Markdown table: the header ``head``, its rule and a line per row of ``rows`` (cells as ``str``)."""
    return [_cells(head), "|" + "---|" * len(head), *map(_cells, rows)]


def _cells(cells: Sequence[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def fmt(v: float | None, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals; '–' for None or a non-finite value."""
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def stats(values: Iterable[float | None], empty: float = math.nan) -> dict[str, float]:
    """Mean, min, max and number ``n`` of the finite values (``empty`` for the three when there are none)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": empty, "min": empty, "max": empty, "n": 0}
    return {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def spread(s: Mapping[str, Any], digits: int = 2) -> str:
    """:func:`stats` as 'mean [min, max]', the mean alone where they agree, '–' where there are no values."""
    if s["n"] == 0:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["mean"], digits)
    return f"{fmt(s['mean'], digits)} [{fmt(s['min'], digits)}, {fmt(s['max'], digits)}]"
