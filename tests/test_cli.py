import json
import subprocess
import sys

import pytest

from layerwise_bench.cli import main

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data

SMALL = ["--dataset", "digits", "--subset", "300", "--epochs", "2", "--no-progress"]


def test_bench_writes_results_plots_and_report(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        assert main(["bench", "autoencoder", "--methods", "adam,kfac", "--out", str(tmp_path / "r"), *SMALL]) == 0
        assert torch.get_num_threads() == 1  # digits: tiny matrices, one thread unless --threads says otherwise
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "final train loss" in printed and "adam" in printed and "kfac" in printed and "report.md" in printed
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert list(results["methods"]) == ["adam", "kfac"]
    assert all(m["status"] == "complete" and len(m["records"]) == 2 for m in results["methods"].values())
    assert results["command"].startswith("layerwise bench autoencoder --methods adam,kfac")
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| adam |" in report and "| kfac |" in report
    # the values the run used, not the None defaults of the config
    assert "batch_size=100," in report and "schedule_epochs=2" in report and "warmup_epochs=0," in report
    assert "None" not in report.split("Measured on")[0].replace("subset=None", "")
    for png in ("loss_vs_epoch.png", "loss_vs_time.png"):
        assert (tmp_path / "r" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_of_several_seeds_shows_spread(tmp_path):
    for seed in (0, 1):
        assert (
            main(
                [
                    "bench",
                    "autoencoder",
                    "--methods",
                    "adam",
                    "--seed",
                    str(seed),
                    "--out",
                    str(tmp_path / f"s{seed}"),
                    *SMALL,
                ]
            )
            == 0
        )
    assert main(["report", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "agg")]) == 0
    report = (tmp_path / "agg" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| adam |"))
    assert "2 run(s)" in report and "[" in row  # mean [min, max]
    assert (tmp_path / "agg" / "loss_vs_time.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--methods", "adam,foo"], "unknown method 'foo'; expected some of: sgd"),
        (["--epochs", "0"], "--epochs: expected a whole number >= 1, found 0"),
        (["--epochs", "ten"], "--epochs: expected a whole number >= 1, found 'ten'"),
        (["--lr", "adam"], "expected METHOD=LR pairs"),
    ],
)
def test_bad_arguments_exit_2_with_message(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "autoencoder", "--out", str(tmp_path / "o"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unreadable_data_dir(tmp_path, capsys):
    code = main(
        [
            "bench",
            "autoencoder",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"MNIST directory '{tmp_path / 'nope' / 'mnist'}' does not exist" in err and "--download" in err


def test_nan_during_run_names_method_and_epoch(tmp_path, capsys):
    code = main(
        [
            "bench",
            "autoencoder",
            "--methods",
            "sgd",
            "--lr",
            "sgd=1e10",
            "--activation",
            "relu",
            "--out",
            str(tmp_path / "o"),
            *SMALL,
        ]
    )
    assert code == 1
    assert "method 'sgd' diverged at epoch 1" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["methods"]["sgd"]["status"] == "diverged"


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["bench", "autoencoder", "--methods", "sgd", "--out", str(out), *SMALL]) == 0
    before = (out / "results.json").read_bytes()
    assert main(["bench", "autoencoder", "--methods", "sgd", "--out", str(out), *SMALL]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before


def test_lr_for_method_not_run(tmp_path, capsys):
    assert (
        main(["bench", "autoencoder", "--methods", "sgd", "--lr", "adam=1e-3", "--out", str(tmp_path / "o"), *SMALL])
        == 1
    )
    assert "--lr names ['adam'], which are not among --methods" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_numbers(tmp_path):
    """SIGKILL a real CLI process mid-run, --resume it, compare with an uninterrupted run."""
    args = [
        "bench",
        "autoencoder",
        "--methods",
        "adam,kfac",
        "--dataset",
        "digits",
        "--subset",
        "500",
        "--epochs",
        "12",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerwise_bench", *args, "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import time

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            res = json.loads((run / "results.json").read_text())
            if len(res["methods"].get("kfac", {}).get("records", [])) >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert main([*args, "--out", str(run), "--resume"]) == 0
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    resumed = json.loads((run / "results.json").read_text())
    for name in ("adam", "kfac"):
        a = [(r["epoch"], r["train_loss"], r["test_loss"]) for r in full["methods"][name]["records"]]
        b = [(r["epoch"], r["train_loss"], r["test_loss"]) for r in resumed["methods"][name]["records"]]
        assert a == b
    # the record keeps the original command, lists the resume, and marks which invocation trained each epoch
    assert resumed["command"] == full["command"].replace(str(tmp_path / "full"), str(run))
    assert len(resumed["resumed_with"]) == 1
    segments = [r["segment"] for r in resumed["methods"]["kfac"]["records"]]
    assert segments[0] == 0 and segments[-1] == 1 and segments == sorted(segments)
    assert "Trained across invocations" in (run / "report.md").read_text()


def test_tensorboard_sink_logs_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    assert (
        main(
            [
                "bench",
                "autoencoder",
                "--methods",
                "adam",
                "--out",
                str(tmp_path / "o"),
                "--tensorboard",
                str(logs),
                *SMALL,
            ]
        )
        == 0
    )
    acc = EventAccumulator(str(logs))
    acc.Reload()
    events = acc.Scalars("adam/train_loss")
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [e.step for e in events] == [1, 2]
    assert [e.value for e in events] == pytest.approx([r["train_loss"] for r in results["methods"]["adam"]["records"]])


def test_keep_going_records_divergence_and_runs_the_rest(tmp_path, capsys):
    out = tmp_path / "o"
    code = main(
        [
            "bench",
            "autoencoder",
            "--methods",
            "sgd,adam",
            "--lr",
            "sgd=1e10",
            "--activation",
            "relu",
            "--keep-going",
            "--out",
            str(out),
            *SMALL,
        ]
    )
    assert code == 1
    assert "method 'sgd' diverged at epoch 1" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["sgd"]["status"] == "diverged"
    assert results["methods"]["adam"]["status"] == "complete"
    assert "| adam |" in (out / "report.md").read_text()


def test_version_and_missing_files_are_clear(tmp_path, capsys):
    import layerwise

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"layerwise {layerwise.__version__}"
    out = tmp_path / "o"
    assert main(["bench", "autoencoder", "--out", str(out), "--tuned", str(tmp_path / "nope.json")]) == 1
    assert "--tuned" in (err := capsys.readouterr().err) and "no such file" in err and "drop --tuned" in err
    assert not out.exists()  # nothing trained, nothing written
    with pytest.raises(SystemExit) as exc:
        main(["bench", "tune", "--methods", "sgd"])  # a sweep never writes into the package unasked
    assert exc.value.code == 2 and "--out-file" in capsys.readouterr().err


def test_every_committed_record_s_command_still_parses():
    """The records' commands (and their resumes) keep working under the current command line."""
    import shlex
    from pathlib import Path

    from layerwise_bench.cli import build_parser

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    commands = []
    for path in sorted(root.glob("*/results.json")):
        results = json.loads(path.read_text())
        for cmd in [results.get("command"), *results.get("resumed_with", [])]:
            if isinstance(cmd, str) and cmd.startswith("layerwise "):
                commands.append((path.parent.name, cmd))
    assert len(commands) >= 8
    for name, cmd in commands:
        try:
            build_parser().parse_args(shlex.split(cmd)[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{cmd}` no longer parses")


def test_every_method_of_a_plot_is_drawn_differently():
    from layerwise_bench.autoencoder._report import line_style

    styles = [line_style(i) for i in range(120)]
    assert len(set(styles)) == len(styles)
    assert len({line_style(i)[0] for i in range(60)}) == 60  # the first 60 differ in colour alone


def test_set_replaces_a_method_s_hyper_parameter_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["bench", "autoencoder", "--methods", "locoprop-m", "--out", str(out), *SMALL]
    assert main([*args, "--set", "locoprop-m.steps=2", "--set", "locoprop-m.gamma=3.5"]) == 0
    entry = json.loads((out / "results.json").read_text())["methods"]["locoprop-m"]
    assert entry["hparams"]["steps"] == 2 and entry["hparams"]["gamma"] == 3.5
    assert main([*args[: -len(SMALL)], *SMALL, "--overwrite", "--set", "locoprop-m.stpes=2"]) == 1
    assert "has no hyper-parameter 'stpes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--overwrite", "--set", "steps=2"])


def test_completed_methods_leave_no_checkpoint_and_a_resume_skips_them(tmp_path, monkeypatch, capsys):
    import layerwise_bench.autoencoder._run as run_module

    out = tmp_path / "r"
    args = ["bench", "autoencoder", "--methods", "adam,sgd", "--out", str(out), *SMALL]
    assert main(args) == 0
    assert not any((out / "checkpoints").glob("*.pt"))  # the record holds the runs
    before = json.loads((out / "results.json").read_text())
    monkeypatch.setattr(run_module, "train_method", lambda *a, **k: pytest.fail("a completed method was retrained"))
    assert main([*args, "--resume"]) == 0
    after = json.loads((out / "results.json").read_text())
    assert after["methods"] == before["methods"] and after["resumed_with"]
    assert main([*args, "--resume", "--lr", "adam=0.5"]) == 1  # another lr is another run: refused
    assert "completed in" in capsys.readouterr().err
    monkeypatch.undo()
    kept = tmp_path / "k"
    assert main(["bench", "autoencoder", "--methods", "adam", "--out", str(kept), "--keep-checkpoints", *SMALL]) == 0
    assert (kept / "checkpoints" / "adam.pt").is_file()
