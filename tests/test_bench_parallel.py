"""The layer-parallel benchmark on a tiny net: 2 processes give the 1-process network; records are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerwise_bench.cli import main

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data


def test_layer_parallel_benchmark_records_equal_losses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    configs = "decoupled, 1 process x 1 thread;decoupled, 2 processes x 1 thread (layer parallel)"
    assert (
        main(
            [
                "bench",
                "layer-parallel",
                "--out",
                str(out),
                "--dataset",
                "digits",
                "--depth",
                "4",
                "--width",
                "16",
                "--subset",
                "300",
                "--repeats",
                "1",
                "--configs",
                configs,
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    one, two = (res["summary"][c] for c in configs.split(";"))
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)
    ranks = res["runs"]["decoupled, 2 processes x 1 thread (layer parallel)"][0]["ranks"]
    assert [r["stage"] for r in ranks] == [[0, 1, 2], [3]] or ranks[0]["stage"][-1] + 1 == ranks[1]["stage"][0]
    assert "÷ 1 process × 1 thread" in (out / "report.md").read_text()


def test_layer_parallel_rejects_unknown_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "layer-parallel", "--out", str(tmp_path), "--configs", "warp drive"]) == 1
    assert "Invalid --configs entry 'warp drive'" in capsys.readouterr().err


def test_zstore_benchmark_measures_each_option(tmp_path: Path) -> None:
    from layerwise_bench import run_zstore_benchmark

    out = tmp_path / "z"
    options = ["float32, memory", "bfloat16, memory-mapped"]
    run_zstore_benchmark(out, dataset="digits", depth=3, width=8, steps=3, options=options, command="test")
    res = json.loads((out / "results.json").read_text())
    n = 1438  # digits training split
    assert {name: r["z_bytes"] for name, r in res["options"].items()} == {
        options[0]: n * 16 * 4,
        options[1]: n * 16 * 2,
    }
    assert all(r["peak_rss_bytes"] > 10 * 2**20 for r in res["options"].values())
    assert "peak RSS" in (out / "report.md").read_text()
