"""``layerwise bench equal-time``: the same training-time budget for every method, schedules fitted to it."""

import json
import math

import pytest

import layerwise_bench as bench
import layerwise_bench._equal_time as equal_time
from layerwise_bench import AutoencoderConfig, load_autoencoder_data, run_equal_time_benchmark, within_budget

pytestmark = pytest.mark.bench  # end-to-end: a benchmark on tiny data

CFG = AutoencoderConfig(dataset="digits", subset=300, batch_size=100, evaluate_test=False)


def test_within_budget_is_the_last_epoch_that_ended_inside():
    recs = [{"epoch": e, "train_time": t} for e, t in [(1, 1.0), (2, 2.0), (3, 3.5)]]
    assert within_budget(recs, 3.0)["epoch"] == 2 and within_budget(recs, 3.5)["epoch"] == 3
    assert within_budget(recs, 0.5) is None


def test_each_method_gets_the_epochs_its_time_allows_and_is_scored_inside_the_budget(tmp_path, monkeypatch):
    data = load_autoencoder_data(CFG)
    out = tmp_path / "et"
    small = {"multiples": (1, 2), "reference_epochs": 3, "calibration_steps": 4, "progress": False, "command": "test"}
    res = run_equal_time_benchmark(["adam", "rmsprop", "kfac"], CFG, data, out, **small)
    budget = res["budget_s"]
    assert budget == res["runs"]["reference/rmsprop"]["records"][-1]["train_time"]
    for key, run in res["runs"].items():
        if key.startswith("reference/"):
            continue
        k = float(key.split("B/")[0])
        name = run["method"]
        if name == "rmsprop" and k == 1:
            assert run["epochs"] == 3  # the reference itself
        else:
            assert run["epochs"] == max(1, math.floor(k * budget / res["epoch_time_estimate"][name]))
        assert [r["epoch"] for r in run["records"]] == list(range(1, run["epochs"] + 1))
        # the schedule is fitted to the epochs: the last epoch runs at the decayed end of the schedule
        assert run["within"] == within_budget(run["records"], k * budget)
        assert run["overran"] == (run["records"][-1]["train_time"] > k * budget)
    report = (out / "report.md").read_text()
    assert "## Within 1·B" in report and "## Within 2·B" in report and "| 1 |" in report
    assert (out / "loss_vs_time.png").read_bytes()[:4] == b"\x89PNG"
    # resuming keeps the calibration, the budget and every finished run: nothing is trained again
    monkeypatch.setattr(equal_time, "train_method", lambda *a, **k: pytest.fail("a finished run was repeated"))
    monkeypatch.setattr(equal_time, "mean_step_time", lambda *a, **k: pytest.fail("calibrated again"))
    again = run_equal_time_benchmark(["adam", "rmsprop", "kfac"], CFG, data, out, **small, resume=True)
    assert again["budget_s"] == budget and json.loads((out / "results.json").read_text())["resumed_with"] == ["test"]


def test_bad_arguments_are_clear_and_write_nothing(tmp_path):
    data = load_autoencoder_data(CFG)
    with pytest.raises(ValueError, match="reference='rmsprop': it must be one of the methods"):
        run_equal_time_benchmark(["adam"], CFG, data, tmp_path / "a")
    with pytest.raises(ValueError, match="multiples"):
        run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "b", multiples=(0,))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    from layerwise_bench.cli import main

    assert main(["bench", "equal-time", "--out", str(tmp_path / "c"), "--methods", "adam"]) == 1
    assert not (tmp_path / "c").exists()
    assert bench.METHODS  # the registry is untouched
