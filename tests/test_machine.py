"""Every record names the machine it ran on: the machine block, its one-line description, when two records
share a machine, a resume on another machine, reports that mix machines, and commands written relative to the
checkout."""

import json
import shutil
from pathlib import Path

import pytest

import layerwise_bench.core._record as record_mod
from layerwise_bench import rebuild_report
from layerwise_bench.cli import main
from layerwise_bench.core._io import atomic_write_json, read_json
from layerwise_bench.core._machine import ISA_FLAGS, describe_machine, machine, same_machine
from layerwise_bench.core._record import Record, command_line, environment, provenance

ROOT = Path(__file__).resolve().parents[1]

OLD = {  # an environment written before the machine block existed
    "python": "3.11.7",
    "torch": "2.13.0+cpu",
    "platform": "Linux-6.18-x86_64-with-glibc2.36",
    "processor": "x86_64",
    "torch_threads": 2,
    "device": "cpu",
}


def _env(model="AMD EPYC 9R14", *, bf16=True, threads=1, isa_env=None, ratio=0.44):
    """A new-style environment by hand."""
    return {
        **OLD,
        "cpu_model": model,
        "cpu_flags": {"avx2": True, "avx512f": bf16, "avx512_bf16": bf16, "amx_bf16": False, "amx_tile": False},
        "cpu_capability": "AVX512" if bf16 else "AVX2",
        "isa_env": isa_env or {},
        "cpu_count": 4,
        "cpus_usable": 2,
        "torch_threads": threads,
        "bf16_matmul_ratio": ratio,
        "native_bf16": ratio <= 2,
    }


def test_the_machine_block_holds_every_field_and_is_json(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 avx512f amx_tile\n\n"
        "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n"
    )
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    m = machine("cpu", cpuinfo=info)
    assert json.loads(json.dumps(m)) == m
    assert m["cpu_model"] == "Test CPU 9000"
    assert m["cpu_flags"] == {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False, "amx_tile": True}
    assert m["isa_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert m["device"] == "cpu" and "gpu" not in m
    assert isinstance(m["bf16_matmul_ratio"], float) and m["bf16_matmul_ratio"] > 0
    assert m["native_bf16"] is (m["bf16_matmul_ratio"] <= 2.0)
    assert m["cpu_capability"] and m["torch_build"]["cuda"] and m["cpu_count"] >= 1
    assert m["cpus_usable"] is None or 1 <= m["cpus_usable"] <= m["cpu_count"]
    # no /proc/cpuinfo: the flags are unknown, not False, and the model falls back to platform
    m = machine("cpu", cpuinfo=tmp_path / "absent")
    assert m["cpu_flags"] == dict.fromkeys(ISA_FLAGS) and m["cpu_model"]


def test_environment_keeps_the_old_keys_beside_the_machine_block():
    env = environment("cpu")
    assert set(OLD) <= set(env) and {"cpu_model", "cpu_flags", "bf16_matmul_ratio", "isa_env"} <= set(env)
    assert json.loads(json.dumps(env)) == env


def test_describe_machine_names_the_cpu_its_isa_and_bf16_speed():
    line = describe_machine(_env("AMD EPYC 9R14"))
    assert line == (
        "AMD EPYC 9R14 (AVX2, AVX-512, AVX512-BF16; bf16 matmul 0.44x fp32), 2 CPUs of 4, 1 torch thread, "
        "torch 2.13.0+cpu, cpu"
    )
    slow = describe_machine(_env(bf16=False, ratio=61.0, threads=2, isa_env={"ONEDNN_MAX_CPU_ISA": "AVX2"}))
    assert "(AVX2; bf16 matmul 61.00x fp32, emulated; ONEDNN_MAX_CPU_ISA=AVX2)" in slow and "2 torch threads" in slow


def test_describe_machine_copes_with_old_records():
    assert describe_machine(OLD) == "CPU model not recorded (x86_64), 2 torch threads, torch 2.13.0+cpu, cpu"
    # telemetry records kept the model as "cpu"
    assert describe_machine({**OLD, "cpu": "Intel Xeon", "cpu_count": 2}).startswith("Intel Xeon, 2 CPUs,")
    assert describe_machine({}).startswith("CPU model not recorded, ? torch threads")


def test_same_machine_compares_cpu_isa_threads_and_device():
    a = _env()
    assert same_machine(a, dict(a, bf16_matmul_ratio=0.6, python="3.12"))  # a measurement, not the machine
    assert not same_machine(a, _env("Intel Xeon 8480"))
    assert not same_machine(a, _env(bf16=False))
    assert not same_machine(a, _env(threads=2))
    assert not same_machine(a, _env(isa_env={"ONEDNN_MAX_CPU_ISA": "AVX2"}))
    assert not same_machine(a, dict(a, device="cuda:0", gpu="H100"))
    # old records: only what both kept
    assert same_machine(OLD, dict(OLD, platform="other"))
    assert not same_machine(OLD, dict(OLD, torch_threads=1))
    assert same_machine(OLD, _env(threads=2)) and not same_machine(OLD, _env(threads=1))


def test_a_resume_on_another_machine_keeps_both(tmp_path, monkeypatch):
    first, other = _env("AMD EPYC 9R14"), _env("Intel Core i7-8700", bf16=False, ratio=58.0)
    here = {"env": first}
    monkeypatch.setattr(record_mod, "environment", lambda device: dict(here["env"]))
    Record(tmp_path, "demo", {"a": 1}, command="c1").save_run("x", {"status": "complete"})
    here["env"] = dict(first, bf16_matmul_ratio=0.5)  # the same machine measuring again: nothing to add
    r = Record(tmp_path, "demo", {"a": 1}, command="c2", resume=True)
    assert "resumed_on" not in r.results
    here["env"] = other
    r = Record(tmp_path, "demo", {"a": 1}, command="c3", resume=True)
    r.save()
    for env in (first, other):  # each machine once, whichever resumes
        here["env"] = env
        Record(tmp_path, "demo", {"a": 1}, command="c4", resume=True).save()
    saved = read_json(tmp_path / "results.json")
    assert saved["environment"] == first and saved["resumed_on"] == [other]
    lines = "\n".join(provenance(saved, "seed 0"))
    assert "2 different machines" in lines and "AMD EPYC 9R14" in lines and "Intel Core i7-8700" in lines
    assert "bf16 matmul 58.00x fp32, emulated" in lines


def test_rebuilding_a_record_resumed_on_another_machine_warns(tmp_path):
    src = ROOT / "benchmarks" / "locoprop-steptime-cpu"
    shutil.copytree(src, tmp_path / "rec")
    results = read_json(tmp_path / "rec" / "results.json")
    report = rebuild_report([tmp_path / "rec"], tmp_path / "plain").read_text()
    assert "Machine: CPU model not recorded" in report and "Warning" not in report
    results["resumed_on"] = [_env("Intel Core i7-8700", bf16=False, ratio=58.0)]
    atomic_write_json(results, tmp_path / "rec" / "results.json")
    report = rebuild_report([tmp_path / "rec"], tmp_path / "mixed").read_text()
    assert "**Warning: these runs were made on 2 different machines" in report
    assert "- machine 1: CPU model not recorded (x86_64)" in report and "- machine 2: Intel Core i7-8700" in report


def test_equal_time_seeds_from_different_machines_are_refused_or_marked(tmp_path, capsys):
    from test_equal_time_summary import _record

    for seed, env in ((0, _env("AMD EPYC 9R14")), (1, _env("Intel Core i7-8700", bf16=False, ratio=58.0))):
        rec = dict(_record(seed, float(seed)), environment=env)
        (tmp_path / f"s{seed}").mkdir()
        atomic_write_json(rec, tmp_path / f"s{seed}" / "results.json")
    dirs = [str(tmp_path / "s0"), str(tmp_path / "s1")]
    with pytest.raises(ValueError, match=r"2 different machines \(seed 0: AMD EPYC.*seed 1: Intel Core.*allow-mixed"):
        rebuild_report(dirs, tmp_path / "all")
    assert not (tmp_path / "all" / "report.md").exists()
    assert main(["report", *dirs, "--out", str(tmp_path / "all")]) == 1
    assert "--allow-mixed-machines" in capsys.readouterr().err
    assert main(["report", *dirs, "--out", str(tmp_path / "all"), "--allow-mixed-machines"]) == 0
    text = (tmp_path / "all" / "report.md").read_text()
    assert "**Warning: these runs were made on 2 different machines" in text
    assert "seed 0 on machine 1, seed 1 on machine 2" in text
    assert "## Within 1·B (mixed machines)" in text and "## Within 3·B (mixed machines)" in text
    # the same seeds on one machine: one table, no marks
    for seed in (0, 1):
        rec = dict(_record(seed, float(seed)), environment=_env("AMD EPYC 9R14"))
        atomic_write_json(rec, tmp_path / f"s{seed}" / "results.json")
    text = rebuild_report(dirs, tmp_path / "one").read_text()
    assert "mixed machines" not in text and "Warning" not in text and "Machine: AMD EPYC 9R14" in text


def test_commands_are_recorded_relative_to_the_working_directory(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    (root / "runs").mkdir(parents=True)
    argv = ["bench", "x", "--out", str(root / "runs" / "a b"), f"--tuned={root}/t.json", "--data-dir", "/elsewhere/d"]
    assert command_line(argv, cwd=root) == ("layerwise bench x --out 'runs/a b' --tuned=t.json --data-dir /elsewhere/d")
    assert command_line(["report", str(root)], cwd=root) == "layerwise report ."
    assert command_line(["report", str(root) + "x"], cwd=root) == f"layerwise report {root}x"  # a sibling, not inside
    # the CLI records its command that way
    seen = {}
    monkeypatch.chdir(root)
    from layerwise_bench.cli._subcommand import Outcome

    def fake_run(args, command):
        seen["c"] = command
        return Outcome()

    monkeypatch.setattr("layerwise_bench.cli._main._run", fake_run)
    assert main(["report", str(root / "runs"), "--out", str(root / "runs")]) == 0
    assert seen["c"] == "layerwise report runs --out runs"


def test_no_committed_record_names_an_absolute_path_in_its_commands():
    found = []
    for path in sorted((ROOT / "benchmarks").glob("**/results.json")):
        res = read_json(path)
        for cmd in [res.get("command"), *(res.get("resumed_with") or [])]:
            if isinstance(cmd, str) and any(p in cmd for p in (" /work/", " /home/", " /tmp/", " /Users/")):
                found.append(f"{path.relative_to(ROOT)}: {cmd}")
    assert not found, found
