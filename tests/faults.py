"""Fault injection for the command line: kill a run during a file write or at a random moment, damage the
files it writes or reads, fill the disk, then check what the user is left with.

Used by ``tests/test_faults.py`` (a fixed sample) and ``benchmarks/fault-injection-cpu/run.py`` (many random
faults, recorded). A fault's outcome is one of:

- ``resumed``: ``--resume`` (or the same command again) finished, with the numbers of an uninterrupted run;
- ``clear error``: the command stopped with exit status 1 and one message naming the file and the fix, no
  traceback, and left every file as it was;
- anything else is a failure, described in the outcome's text.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The child installs the fault, then runs the CLI in-process. Faults that need the moment of a write
# hook os.fsync (called once per file by the atomic writer, after the data and before the rename) or
# os.replace (the rename that publishes the file).
DRIVER = textwrap.dedent("""
    import json, os, resource, signal, sys

    spec = json.loads(os.environ.get("LAYERWISE_FAULT", "null"))
    if spec and spec.get("fsize"):  # a disk that fills: writes past this size fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec["fsize"], spec["fsize"]))
    if spec and spec.get("kind") in ("kill-in-write", "kill-after-write"):
        seen = [0]

        def target(name):
            base = os.path.basename(name)
            return spec["file"] in base

        def die():
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        if spec["kind"] == "kill-in-write":
            real_fsync = os.fsync

            def fsync(fd):
                name = os.readlink(f"/proc/self/fd/{fd}")
                if target(name):
                    seen[0] += 1
                    if seen[0] == spec["nth"]:
                        size = os.fstat(fd).st_size
                        os.ftruncate(fd, int(size * spec["fraction"]))  # part of the data reached the disk
                        die()
                return real_fsync(fd)

            os.fsync = fsync
        else:
            real_replace = os.replace

            def replace(src, dst, *a, **k):
                real_replace(src, dst, *a, **k)
                if target(str(dst)):
                    seen[0] += 1
                    if seen[0] == spec["nth"]:
                        die()

            os.replace = replace

    from layerwise_bench.cli import main
    sys.exit(main(sys.argv[1:]))
""")

NUMBERS = ("epoch", "lr", "train_loss", "test_loss", "steps")  # what a resumed run must reproduce exactly


def run_cli(
    args: list[str], cwd: Path, fault: dict[str, Any] | None = None, kill_after: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``layerwise <args>`` in a child process with ``fault`` installed; SIGKILL it after ``kill_after`` s."""
    env = {**os.environ, "LAYERWISE_FAULT": json.dumps(fault), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def numbers(results: Path) -> dict[str, list[list[Any]]]:
    """Per method, the per-epoch numbers a resumed run must reproduce (timings excluded)."""
    data = json.loads(results.read_text())
    if "methods" in data and isinstance(data["methods"], dict):
        return {
            m: [[r[k] for k in NUMBERS] for r in entry["records"]]
            for m, entry in data["methods"].items()
            if entry.get("records")
        }
    return {"points": sorted(map(json.dumps, data["points"].items()))}  # a tuned-values file


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative path -> digest)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def is_clear_error(proc: subprocess.CompletedProcess[str], names: str) -> str | None:
    """``None`` when ``proc`` stopped with status 1, no traceback, and a message naming ``names``; else why not."""
    if proc.returncode != 1:
        return f"exit status {proc.returncode} (expected 1); stderr: {proc.stderr[-400:]!r}"
    if "Traceback" in proc.stderr:
        return f"a traceback: {proc.stderr[-600:]!r}"
    if names not in proc.stderr:
        return f"the message does not name {names!r}: {proc.stderr[-400:]!r}"
    return None


@dataclass
class Outcome:
    fault: str
    outcome: str  # "resumed", "clear error", or "FAILED: ..."
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.outcome.startswith("FAILED")


def kill_and_resume(
    args: list[str],
    work: Path,
    reference: dict[str, Any],
    fault: dict[str, Any] | None = None,
    kill_after: float | None = None,
    resume: list[str] | None = None,
) -> Outcome:
    """Run ``args`` with the fault, then ``args + resume`` until it finishes; compare with ``reference``.

    ``resume`` defaults to ``["--resume"]``. The last path argument of ``args`` (``--out``/``--out-file``)
    is the file or folder compared.
    """
    what = json.dumps(fault) if fault else f"SIGKILL after {kill_after:.2f} s"
    first = run_cli(args, work, fault, kill_after)
    killed = first.returncode == -signal.SIGKILL
    detail = "killed" if killed else f"finished before the fault (exit {first.returncode})"
    if not killed and first.returncode != 0:
        return Outcome(what, "FAILED: the faulted run failed", first.stderr[-600:])
    for _ in range(3):  # a kill needs one resume; a second is allowed, and must change nothing
        again = run_cli([*args, *(resume or ["--resume"])], work)
        if again.returncode == 0:
            break
    else:
        return Outcome(what, "FAILED: the resume did not finish", again.stderr[-600:])
    got = numbers(work / reference["file"])
    if got != reference["numbers"]:
        return Outcome(what, "FAILED: resumed to different numbers", json.dumps(got)[:600])
    leftovers = [str(p) for p in (work / reference["file"]).parent.rglob(".*.tmp")]
    if leftovers:
        return Outcome(what, "FAILED: temporary files left behind", ", ".join(leftovers))
    return Outcome(what, "resumed", detail)


def damage(path: Path, how: str, rng: random.Random) -> str:
    """Truncate ``path`` or flip one bit at a random place; returns what was done."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        cut = rng.randrange(0, len(data))
        path.write_bytes(bytes(data[:cut]))
        return f"truncated {path.name} to {cut} of {len(data)} bytes"
    where, bit = rng.randrange(len(data)), rng.randrange(8)
    data[where] ^= 1 << bit
    path.write_bytes(bytes(data))
    return f"flipped bit {bit} of byte {where} of {len(data)} in {path.name}"


def damaged_input(
    args: list[str], work: Path, victim: Path, how: str, rng: random.Random, reference: dict[str, Any] | None
) -> Outcome:
    """Damage ``victim``, run ``args``: expect a clear error naming it with every file under ``work`` left as
    it was, or (a damage that changes nothing the program reads) the reference numbers."""
    what = damage(victim, how, rng)
    before = snapshot(work)
    proc = run_cli(args, work)
    after = snapshot(work)
    if proc.returncode == 0:
        if reference is not None and numbers(work / reference["file"]) == reference["numbers"]:
            return Outcome(what, "resumed", "the damage did not reach the numbers")
        return Outcome(what, "FAILED: accepted a damaged file", proc.stdout[-300:])
    why = is_clear_error(proc, victim.name)
    if why:
        return Outcome(what, f"FAILED: {why}")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        return Outcome(what, "FAILED: files changed by the failed command", ", ".join(changed))
    return Outcome(what, "clear error", proc.stderr.strip().splitlines()[-1][:300])


def full_disk(args: list[str], work: Path, reference: dict[str, Any], fsize: int) -> Outcome:
    """Run with writes limited to ``fsize`` bytes per file (a real EFBIG from the kernel), expect a clear error
    naming the file, then ``--resume`` without the limit must finish with the reference numbers."""
    what = f"file size limit {fsize} bytes (EFBIG)"
    first = run_cli(args, work, {"fsize": fsize})
    if first.returncode == 0:
        return Outcome(what, "FAILED: the limit was never reached")
    why = is_clear_error(first, "could not write")
    if why:
        return Outcome(what, f"FAILED: {why}")
    again = run_cli([*args, "--resume"], work)
    if again.returncode != 0:
        return Outcome(what, "FAILED: the resume did not finish", again.stderr[-600:])
    if numbers(work / reference["file"]) != reference["numbers"]:
        return Outcome(what, "FAILED: resumed to different numbers")
    return Outcome(what, "clear error, then resumed", first.stderr.strip().splitlines()[-1][:300])


def reference_run(args: list[str], work: Path, file: str) -> dict[str, Any]:
    """An uninterrupted run: its numbers, and how long it took (to place random kills)."""
    start = time.perf_counter()
    proc = run_cli(args, work)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference run failed: {proc.stderr[-800:]}")
    return {"file": file, "numbers": numbers(work / file), "seconds": time.perf_counter() - start}
