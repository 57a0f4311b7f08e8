"""``layerwise bench telemetry`` on a tiny configuration: the records are complete and consistent."""

import json

import pytest
import torch

from layerwise_bench import run_telemetry_benchmark
from layerwise_bench.cli import main
from layerwise_bench.timing._telemetry import DeepSupervisionMLP, tap_depths

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is as fast, and immune to oversubscription on a busy machine (conftest restores)."""
    torch.set_num_threads(1)


TINY = dict(k=(1, 3), steps=2, every=2, repeats=2, short_steps=1, batch_size=4)


def test_tap_depths_and_terms():
    assert tap_depths(2) == [4, 8] and tap_depths(3) == [3, 5, 8] and tap_depths(8) == list(range(1, 9))
    model = DeepSupervisionMLP(tap_depths(4))
    assert list(model.heads) == ["aux2", "aux4", "aux6", "main"]
    with pytest.raises(ValueError, match=r"Invalid K=9: expected 1 <= K <= 8"):
        tap_depths(9)


def test_tiny_run_writes_consistent_records(tmp_path):
    res = run_telemetry_benchmark(tmp_path / "out", command="test", **TINY)
    assert [r["k"] for r in res["rows"]] == [1, 3]
    for r in res["rows"]:
        assert all(len(v) == 2 and min(v) > 0 for v in r["times"].values())
        assert r["every1_vs_kgrad"] == pytest.approx(r["every1_s"] / r["kgrad_s"])
        assert r["every1_vs_kgrad_stats"] == pytest.approx(r["every1_s"] / r["kgrad_stats_s"])
        assert set(r["check"]) == {
            "kgrad_vs_plain",
            "kgrad_stats_vs_plain",
            "ours_vs_plain",
            "norms_vs_autograd",
            "reference_norms_vs_autograd",
        }
        assert r["everyN_overhead"] == pytest.approx(r["everyN_s"] / r["plain_s"] - 1)
        assert max(r["check"].values()) < 1e-3  # the paths compute the same gradients and norms
    assert res["rows"][1]["terms"] == ["aux3", "aux5", "main"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["rows"][0]["plain_s"] == res["rows"][0]["plain_s"] and saved["config"]["trunk_params"] == 2240512
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| 1 |" in report and "| 3 |" in report and "torch threads" in report and "Load average" in report
    assert "every=1 / (K-grad + stats)" in report and "(the other reading)" in report
    assert set(res["acceptance"]["every1_le_kgrad_stats"]) == {1, 3}
    assert (tmp_path / "out" / "step_time_vs_k.png").read_bytes()[:4] == b"\x89PNG"


def test_steps_must_be_a_multiple_of_every(tmp_path):
    with pytest.raises(ValueError, match="steps must be a multiple of every"):
        run_telemetry_benchmark(tmp_path, **{**TINY, "steps": 3})
    assert not any(tmp_path.iterdir())


def test_cli(tmp_path, capsys):
    assert (
        main(
            [
                "bench",
                "telemetry",
                "--out",
                str(tmp_path / "o"),
                "--k",
                "2",
                "--steps",
                "2",
                "--every",
                "1",
                "--repeats",
                "1",
                "--batch-size",
                "4",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "K=2: plain" in out and "every=1" in out
    assert json.loads((tmp_path / "o" / "results.json").read_text())["command"].startswith("layerwise bench telemetry")
    assert main(["bench", "telemetry", "--out", str(tmp_path / "p"), "--k", "9"]) == 1
    assert "Invalid K=9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "telemetry", "--out", str(tmp_path / "q"), "--k", "0"])
