"""The run record every benchmark writes: one shape, never clobbered, resumed only with the same config."""

import json

import pytest

from layerwise_bench.core._record import RESULTS_FILE, Record, check_names, save_report


def test_a_fresh_record_has_the_common_shape_and_saves_each_run(tmp_path):
    r = Record(tmp_path / "o", "demo", {"a": 1}, command="layerwise bench demo")
    assert set(r.results) == {"benchmark", "command", "config", "environment", "runs"}
    assert r.results["environment"]["device"] == "cpu"
    r.save_run("m/0", {"status": "running"})
    saved = json.loads((tmp_path / "o" / RESULTS_FILE).read_text())
    assert saved["runs"] == {"m/0": {"status": "running"}} and saved["benchmark"] == "demo"
    assert not r.finished("m/0")
    r.save_run("m/0", {"status": "complete"})
    assert r.finished("m/0") and not r.finished("m/1")


def test_an_existing_record_is_resumed_with_the_same_config_or_refused(tmp_path):
    first = Record(tmp_path, "demo", {"a": 1}, command="c1")
    first.save_run("x", {"status": "complete"})
    before = (tmp_path / RESULTS_FILE).read_text()
    with pytest.raises(FileExistsError, match="already holds a run.*--resume.*--overwrite"):
        Record(tmp_path, "demo", {"a": 1}, command="c2")
    with pytest.raises(ValueError, match=r"--resume: the run in .* used config \{'a': 1\}, not \{'a': 2\}"):
        Record(tmp_path, "demo", {"a": 2}, command="c2", resume=True)
    assert (tmp_path / RESULTS_FILE).read_text() == before  # refusals change nothing
    resumed = Record(tmp_path, "demo", {"a": 1}, command="c3", resume=True)
    assert resumed.finished("x") and resumed.results["resumed_with"] == ["c3"]
    replaced = Record(tmp_path, "demo", {"a": 2}, command="c4", overwrite=True)
    assert replaced.runs == {} and replaced.results["command"] == "c4"


def test_a_record_without_a_runs_table_says_so(tmp_path):
    r = Record(tmp_path, "timing", {}, command="c", runs_key=None)
    assert "runs" not in r.results
    with pytest.raises(TypeError, match="keeps no runs table"):
        r.finished("x")


def test_the_report_ends_with_the_hand_written_notes(tmp_path):
    (tmp_path / "notes.md").write_text("Measured on a busy machine.\n")
    path = save_report(tmp_path, ["# Title", "", "body"])
    assert path.read_text() == "# Title\n\nbody\n\n## Notes\n\nMeasured on a busy machine.\n"


def test_check_names_names_the_unknown_and_the_valid():
    check_names("methods", ["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"Invalid methods \['c'\]: expected some of \['a', 'b'\]"):
        check_names("methods", ["a", "c"], ["a", "b"])
    with pytest.raises(ValueError, match=r"Invalid methods \[\]"):
        check_names("methods", [], ["a"])


def test_an_unwritable_out_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match=r"--out '.*a-file/run' is not a writable directory.*nothing was run"):
        Record(blocker / "run", "demo", {}, command="c")
    assert blocker.read_text() == "not a directory"


def test_the_cli_says_so_too(tmp_path, capsys):
    from layerwise_bench.cli import main

    blocker = tmp_path / "f"
    blocker.write_text("")
    assert main(["bench", "steptime", "--out", str(blocker / "o"), "--steps", "1", "--repeats", "1"]) == 1
    assert "is not a writable directory" in capsys.readouterr().err


def test_every_committed_record_s_report_can_be_rebuilt_or_is_a_clear_error(tmp_path):
    """Every committed ``results.json`` (any depth) rebuilds its report, or the error names it and the fix."""
    import json
    from pathlib import Path

    import layerwise_bench as bench

    kinds = set()
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    for results in sorted(root.glob("**/results.json")):  # every record, those in subfolders (seeds, variants) too
        kind = json.loads(results.read_text()).get("benchmark")
        if kind in (None, "fault-injection"):
            continue
        kinds.add(kind)
        out = tmp_path / "_".join(results.parent.relative_to(root).parts)
        try:
            path = bench.rebuild_report([results.parent], out)
        except ValueError as exc:
            assert str(results) in str(exc) and "--overwrite" in str(exc)
            continue
        assert path.read_text().startswith("#") and (out / "report.md") == path
    assert {"autoencoder", "locoprop-steptime", "telemetry-overhead"} <= kinds


def test_provenance_lists_each_resume_command_once_with_its_count():
    from layerwise_bench.core._record import provenance

    lines = provenance({"command": "run", "resumed_with": ["a", "b", "a", "a"]}, "seed 0")
    assert [x for x in lines if x.startswith("Resumed")] == ["Resumed 3 times with: `a`", "Resumed with: `b`"]
