"""Faults injected into real command-line runs (a fixed sample of benchmarks/fault-injection-cpu/run.py):
a kill during a file write resumes to the numbers of an uninterrupted run; damage and a full disk are clear
errors that change no file."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

import faults

ARGS = [
    *("bench", "autoencoder", "--dataset", "digits", "--subset", "200", "--methods", "adam,locoprop-m"),
    *("--epochs", "2", "--no-progress", "--out", "run"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return faults.reference_run(ARGS, tmp_path_factory.mktemp("ref"), "run/results.json")


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "kill-in-write", "file": ".pt", "nth": 2, "fraction": 0.4},  # half a checkpoint on disk
        {"kind": "kill-in-write", "file": "results.json", "nth": 3, "fraction": 0.7},
        {"kind": "kill-after-write", "file": "results.json", "nth": 2, "fraction": 0.0},
    ],
)
def test_a_kill_during_a_write_resumes_to_the_same_numbers(tmp_path: Path, reference: dict, fault: dict) -> None:
    out = faults.kill_and_resume(ARGS, tmp_path, reference, fault)
    assert out.outcome == "resumed" and out.detail == "killed", out


def test_a_killed_writer_s_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    from layerwise_bench.core._io import _WRITER, atomic_write_json

    dead = tmp_path / f".results.json.{_WRITER}-999999999.abc.tmp"  # no such process on this host
    live = tmp_path / f".results.json.{_WRITER}-{os.getppid()}.abc.tmp"  # a live process may still be writing it
    other = tmp_path / ".results.json.0000beef-999999999.abc.tmp"  # another host sharing the folder
    odd = tmp_path / f".results.json.{_WRITER}-99999999999999999999999.abc.tmp"  # not a PID
    for t in (dead, live, other, odd):
        t.write_text("half")
    atomic_write_json({"a": 1}, tmp_path / "results.json")
    assert not dead.exists() and live.exists() and other.exists() and odd.exists()


def test_a_record_keyed_by_integers_verifies() -> None:
    import tempfile

    from layerwise_bench.core._io import atomic_write_json, read_json

    with tempfile.TemporaryDirectory() as d:
        atomic_write_json({"acceptance": {2: True, 10: False}}, Path(d) / "r.json")
        assert read_json(Path(d) / "r.json") == {"acceptance": {"2": True, "10": False}}


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_records_and_tuned_files_are_named_and_left_as_they_were(
    tmp_path: Path, reference: dict, how: str
) -> None:
    import shutil

    ran = faults.run_cli(ARGS, tmp_path)
    assert ran.returncode == 0, ran.stderr
    rng = random.Random(3)
    shutil.copy(tmp_path / "run/results.json", tmp_path / "copy.json")
    out = faults.damaged_input([*ARGS, "--resume"], tmp_path, tmp_path / "run/results.json", how, rng, reference)
    assert out.outcome in ("clear error", "resumed"), out  # "resumed": a flip that JSON reads as the same value
    shutil.copy(tmp_path / "copy.json", tmp_path / "run/results.json")
    out = faults.damaged_input(["report", "run"], tmp_path, tmp_path / "run/results.json", how, rng, reference)
    assert out.outcome in ("clear error", "resumed"), out  # "resumed": e.g. the last newline cut


def test_a_flipped_digit_in_a_record_is_caught_by_its_digest(tmp_path: Path) -> None:
    ran = faults.run_cli(ARGS, tmp_path)
    assert ran.returncode == 0, ran.stderr
    path = tmp_path / "run/results.json"
    text = path.read_text()
    assert json.loads(text)["sha256"]
    loss = repr(json.loads(text)["methods"]["adam"]["records"][0]["train_loss"])
    changed = loss[:-1] + ("1" if loss[-1] != "1" else "2")  # valid JSON, another number
    path.write_text(text.replace(loss, changed, 1))
    proc = faults.run_cli(["report", "run"], tmp_path)
    assert faults.is_clear_error(proc, "results.json") is None
    assert "does not match the SHA-256 digest" in proc.stderr and "delete its 'sha256' entry" in proc.stderr


def test_a_file_size_limit_is_a_clear_error_and_resume_finishes(tmp_path: Path, reference: dict) -> None:
    out = faults.full_disk(ARGS, tmp_path, reference, 1_000_000)  # a real EFBIG from the kernel
    assert out.outcome == "clear error, then resumed", out


def test_notes_that_are_not_utf8_still_make_a_report_with_a_warning(tmp_path: Path) -> None:
    from layerwise_bench.core._record import save_report

    (tmp_path / "notes.md").write_bytes(b"Measured on \xff the 2-core machine.")
    with pytest.warns(UserWarning, match=r"notes\.md' is not valid UTF-8"):
        path = save_report(tmp_path, ["# Report"])
    assert "Measured on \ufffd the 2-core machine." in path.read_text()
    assert (tmp_path / "notes.md").read_bytes() == b"Measured on \xff the 2-core machine."
