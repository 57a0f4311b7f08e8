"""Inject faults into the command line's runs and record the outcomes (issue 17).

    python benchmarks/fault-injection-cpu/run.py --kills 24 --damages 4 --distributed 4 --seed 0

Writes results.json and report.md beside this file. Every fault runs in a fresh folder under a temporary
directory; see tests/faults.py for the injection mechanics and what counts as each outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))

import faults  # noqa: E402

AUTOENCODER = [
    *("bench", "autoencoder", "--dataset", "digits", "--subset", "300"),
    *("--methods", "adam,locoprop-m,kfac", "--epochs", "3", "--no-progress", "--out", "run"),
]
TUNE = [
    *("bench", "tune", "--dataset", "digits", "--subset", "300", "--epochs", "2", "--points", "3"),
    *("--methods", "adam,sgd", "--no-progress", "--out-file", "tuned.json"),
]
WRITTEN = {"results.json": 10, ".pt": 10, "report.md": 1, ".png": 2}  # file kind: writes per run (about)


def fresh(root: Path, name: str) -> Path:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def kills(root: Path, rng: random.Random, n: int, log: list[dict]) -> None:
    if not n:
        return
    ref = faults.reference_run(AUTOENCODER, fresh(root, "ref-autoencoder"), "run/results.json")
    again = faults.reference_run(AUTOENCODER, fresh(root, "ref-autoencoder-2"), "run/results.json")
    assert again["numbers"] == ref["numbers"], "two uninterrupted runs differ: the comparison would be meaningless"
    tune_ref = faults.reference_run(TUNE, fresh(root, "ref-tune"), "tuned.json")
    for i in range(n):
        kind = ["kill-in-write", "kill-after-write", "random"][i % 3]
        if kind == "random":
            fault, after = None, rng.uniform(2.0, ref["seconds"])
        else:
            file = rng.choice(list(WRITTEN))
            fault = {"kind": kind, "file": file, "nth": rng.randint(1, WRITTEN[file]), "fraction": rng.random()}
            after = None
        out = faults.kill_and_resume(AUTOENCODER, fresh(root, f"kill{i}"), ref, fault, after)
        log.append({"group": f"autoencoder: {kind}", **vars(out)})
        print(log[-1], flush=True)
    for i in range(max(2, n // 4) if n else 0):
        kind = ["kill-in-write", "kill-after-write", "random"][i % 3]
        fault = {"kind": kind, "file": "tuned.json", "nth": rng.randint(1, 8), "fraction": rng.random()}
        after = rng.uniform(2.0, tune_ref["seconds"]) if kind == "random" else None
        out = faults.kill_and_resume(TUNE, fresh(root, f"tunekill{i}"), tune_ref, None if after else fault, after)
        log.append({"group": f"tune: {kind}", **vars(out)})
        print(log[-1], flush=True)


def damages(root: Path, rng: random.Random, n: int, log: list[dict]) -> None:
    ref = faults.reference_run(AUTOENCODER, fresh(root, "dref"), "run/results.json")
    mnist = REPO.parent / "shared" / "data" / "mnist"
    for i in range(n):
        for how in ("truncate", "flip"):
            # a checkpoint of an interrupted run, then the documented fix (delete it) resumes to the numbers
            w = fresh(root, f"ckpt{i}{how}")
            faults.run_cli(AUTOENCODER, w, {"kind": "kill-after-write", "file": ".pt", "nth": rng.randint(1, 5)})
            victim = rng.choice(sorted((w / "run" / "checkpoints").glob("*.pt")))
            out = faults.damaged_input([*AUTOENCODER, "--resume"], w, victim, how, rng, None)
            if out.outcome == "clear error":
                victim.unlink()
                fixed = faults.run_cli([*AUTOENCODER, "--resume"], w)
                if fixed.returncode != 0 or faults.numbers(w / "run/results.json") != ref["numbers"]:
                    out.outcome = "FAILED: after deleting the damaged checkpoint the run did not reach the numbers"
                else:
                    out.detail += " | after the fix: resumed to the reference numbers"
            log.append({"group": "damaged checkpoint (--resume)", **vars(out)})
            print(log[-1], flush=True)
            # the record of a finished run, read by --resume and by `layerwise report`
            w = fresh(root, f"res{i}{how}")
            shutil.copytree(root / "dref" / "run", w / "run")
            out = faults.damaged_input([*AUTOENCODER, "--resume"], w, w / "run/results.json", how, rng, ref)
            log.append({"group": "damaged results.json (--resume)", **vars(out)})
            print(log[-1], flush=True)
            w = fresh(root, f"rep{i}{how}")
            shutil.copytree(root / "dref" / "run", w / "run")
            out = faults.damaged_input(["report", "run"], w, w / "run/results.json", how, rng, None)
            log.append({"group": "damaged results.json (layerwise report)", **vars(out)})
            print(log[-1], flush=True)
            # the hand-written notes.md, read into every report: shown as it is, a warning where not UTF-8
            w = fresh(root, f"notes{i}{how}")
            shutil.copytree(root / "dref" / "run", w / "run")
            (w / "run/notes.md").write_text("Measured on the 2-core machine; see the command above.\n" * 3)
            what = faults.damage(w / "run/notes.md", how, rng)
            before = faults.snapshot(w / "run")
            proc = faults.run_cli(["report", "run"], w)
            after = faults.snapshot(w / "run")
            try:
                (w / "run/notes.md").read_bytes().decode()
                utf8 = True
            except UnicodeDecodeError:
                utf8 = False
            kept = all(before[k] == after.get(k) for k in before if not k.endswith((".md", ".png")) or k == "notes.md")
            if proc.returncode == 0 and kept and (utf8 or "not valid UTF-8" in proc.stderr):
                out = faults.Outcome(what, "report written", "as UTF-8" if utf8 else "warned: not valid UTF-8")
            else:
                out = faults.Outcome(what, "FAILED: notes.md", proc.stderr[-400:])
            log.append({"group": "damaged notes.md (layerwise report)", **vars(out)})
            print(log[-1], flush=True)
            # a tuned-values file, as input (--tuned) and as the sweep's own file (--resume)
            w = fresh(root, f"tuned{i}{how}")
            faults.run_cli(TUNE, w)
            shutil.copy(w / "tuned.json", w / "input.json")
            args = [*AUTOENCODER, "--methods", "adam", "--tuned", "input.json"]
            out = faults.damaged_input(args, w, w / "input.json", how, rng, None)
            log.append({"group": "damaged tuned-values file (--tuned)", **vars(out)})
            print(log[-1], flush=True)
            out = faults.damaged_input([*TUNE, "--resume"], w, w / "tuned.json", how, rng, None)
            log.append({"group": "damaged tuned-values file (tune --resume)", **vars(out)})
            print(log[-1], flush=True)
            # the data: an MNIST file
            w = fresh(root, f"mnist{i}{how}")
            shutil.copytree(mnist, w / "data" / "mnist")
            victim = w / "data" / "mnist" / rng.choice(sorted(p.name for p in mnist.glob("*.gz")))
            args = ["bench", "autoencoder", "--dataset", "mnist", "--data-dir", "data", "--subset", "100"]
            args += ["--epochs", "1", "--methods", "adam", "--no-progress", "--out", "run"]
            out = faults.damaged_input(args, w, victim, how, rng, None)
            log.append({"group": "damaged MNIST file", **vars(out)})
            print(log[-1], flush=True)


def full_disks(root: Path, log: list[dict]) -> None:
    ref = faults.reference_run(AUTOENCODER, fresh(root, "fref"), "run/results.json")
    for fsize in (4_000, 1_000_000, 20_000_000):  # the first results.json, the first checkpoint, K-FAC's
        out = faults.full_disk(AUTOENCODER, fresh(root, f"fsize{fsize}"), ref, fsize)
        log.append({"group": "full disk: RLIMIT_FSIZE", **vars(out)})
        print(log[-1], flush=True)
    for size_mb in (1, 40):  # a real small file system (tmpfs), then room made and --resume
        mnt = fresh(root, f"tmpfs{size_mb}")
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)])
        if mounted.returncode != 0:
            log.append({"group": "full disk: tmpfs", "fault": f"{size_mb} MB", "outcome": "not run (no mount)"})
            continue
        try:
            what = f"tmpfs of {size_mb} MB (ENOSPC), then remounted at 400 MB"
            first = faults.run_cli(AUTOENCODER, mnt)
            why = faults.is_clear_error(first, "No space left on device")
            if first.returncode == 0:
                out = faults.Outcome(what, "FAILED: the disk never filled")
            elif why:
                out = faults.Outcome(what, f"FAILED: {why}")
            else:
                subprocess.run(["mount", "-o", "remount,size=400m", str(mnt)], check=True)
                again = faults.run_cli([*AUTOENCODER, "--resume"], mnt)
                same = again.returncode == 0 and faults.numbers(mnt / "run/results.json") == ref["numbers"]
                line = first.stderr.strip().splitlines()[-1][:300]
                out = faults.Outcome(what, "clear error, then resumed" if same else "FAILED: resume", line)
        finally:
            subprocess.run(["umount", str(mnt)])
        log.append({"group": "full disk: tmpfs", **vars(out)})
        print(log[-1], flush=True)


def distributed(root: Path, rng: random.Random, n: int, log: list[dict]) -> None:
    """Two gloo processes; one is killed at a random all-reduce; the other must stop with a CollectiveFailure,
    its parameters and optimizer state as before the failed step (the worker of tests/test_faults_distributed)."""
    from test_faults_distributed import run_pair

    for i in range(n):
        for mode in ("iterative", "precond", "weighting"):
            die_at = rng.randint(1, 40)
            codes, logs = run_pair(fresh(root, f"dist{i}{mode}"), mode, die_at)
            line = next((x for x in logs[0].splitlines() if x.startswith("FAILURE")), "")
            what = f"{mode}: rank 1 SIGKILLed at its all-reduce #{die_at}"
            if codes[0] == 4 and "params unchanged: True state unchanged: True" in line:
                out = faults.Outcome(what, "clear error", line[:300])
            else:
                out = faults.Outcome(what, f"FAILED: rank 0 exit {codes[0]}", logs[0][-400:])
            log.append({"group": "distributed: a worker killed", **vars(out)})
            print(log[-1], flush=True)


def decoupled(root: Path, log: list[dict]) -> None:
    """Layer parallelism (the decoupled trainer, two stages): rank 1 dies at step 7 of each z-update order; rank 0
    must stop with a StageFailure and keep its last full-epoch checkpoint (tests/test_decoupled_distributed)."""
    import torch

    from test_decoupled_distributed import _run

    for how in ("joint", "alternating", "z-first", "forward"):
        w = fresh(root, f"decoupled-{how}")
        procs, out = _run(w, how, crash=True)
        logs = [p.communicate(timeout=300)[0] for p in procs]
        what = f"layer-parallel {how}: rank 1 dies at step 7"
        ok = procs[0].returncode == 4 and "STAGEFAILURE" in logs[0] and "died or timed out" in logs[0]
        if ok:
            ckpt = torch.load(f"{out}.0.ckpt", weights_only=False)
            line = next(x for x in logs[0].splitlines() if "STAGEFAILURE" in x)
            outcome = faults.Outcome(what, "clear error", f"{line[:250]} | checkpoint at step {ckpt['steps']} kept")
        else:
            outcome = faults.Outcome(what, f"FAILED: rank 0 exit {procs[0].returncode}", logs[0][-400:])
        log.append({"group": "distributed: a worker killed (layer parallel)", **vars(outcome)})
        print(log[-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=24, help="kills of the autoencoder run (a quarter as many of tune)")
    ap.add_argument("--damages", type=int, default=4, help="rounds of damage (each truncates and flips every kind)")
    ap.add_argument("--distributed", type=int, default=4, help="rounds of killed workers (each in every mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    log: list[dict] = []
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="layerwise-faults-") as tmp:
        root = Path(tmp)
        kills(root, rng, args.kills, log)
        damages(root, rng, args.damages, log)
        full_disks(root, log)
        distributed(root, rng, args.distributed, log)
        decoupled(root, log)
    import torch

    import layerwise

    record = {
        "benchmark": "fault-injection",
        "command": "python benchmarks/fault-injection-cpu/run.py " + " ".join(sys.argv[1:]),
        "environment": {
            "layerwise": layerwise.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "seconds": round(time.time() - start, 1),
        "faults": log,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "report.md").write_text(report(record))
    failed = [f for f in log if f["outcome"].startswith("FAILED")]
    print(f"{len(log)} faults, {len(failed)} failed; wrote {args.out}/report.md")
    sys.exit(1 if failed else 0)


def report(record: dict) -> str:
    log = record["faults"]

    def label(f: dict) -> str:
        first = f["outcome"].split(":")[0]
        return first + (" (finished before the kill)" if f.get("detail", "").startswith("finished") else "")

    by = Counter((f["group"], label(f)) for f in log)
    lines = [
        "# Fault injection: kills, damaged files and full disks (CPU)",
        "",
        f"Command: `{record['command']}` ({record['seconds']} s); environment: `{json.dumps(record['environment'])}`.",
        "",
        f"**{len(log)} faults injected; {sum(1 for f in log if f['outcome'].startswith('FAILED'))} failed** "
        f"({sum(1 for f in log if f.get('detail', '').startswith('finished'))} random kills came after the run "
        "had finished: counted, but they test only the rerun of a finished run).",
        "",
        "| fault | outcome | count |",
        "|---|---|---|",
        *(f"| {g} | {o} | {c} |" for (g, o), c in sorted(by.items())),
        "",
        "Outcomes: *resumed* = `--resume` finished with exactly the per-epoch numbers (epoch, lr, train and",
        "test loss, steps) of an uninterrupted run, no temporary file left; *clear error* = exit status 1, one",
        "message naming the file and the fix, no traceback, every file in the folder byte-identical before",
        "and after. A damaged checkpoint is then deleted (the fix the message gives) and the run must resume",
        "to the reference numbers. Every fault and its message is in `results.json`.",
        "",
    ]
    notes = HERE / "notes.md"
    if notes.is_file():
        lines += ["## Notes", "", notes.read_text().strip(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--report-only"]:  # rewrite report.md from results.json (e.g. after editing notes.md)
        (HERE / "report.md").write_text(report(json.loads((HERE / "results.json").read_text())))
    else:
        main()
