"""``layerwise bench equal-time``: the same training-time budget for every method, schedules fitted to it."""

import json
import math
from dataclasses import replace

import pytest

import layerwise_bench as bench
import layerwise_bench._equal_time as equal_time
from layerwise_bench import AutoencoderConfig, load_autoencoder_data, run_equal_time_benchmark, within_budget
from layerwise_bench._tuned import prepare_methods

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
            assert run["epochs"] == max(1, math.floor(k * budget / bench.fitted_epoch_time(res, k, name)))
            if k > 1:  # fitted to the epoch time measured within B, not to the 60-step estimate
                within_b = res["runs"][f"1B/{name}"]["records"]
                assert bench.fitted_epoch_time(res, k, name) == within_b[-1]["train_time"] / len(within_b)
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


TUNED = {n: lr for n, (lr, _) in prepare_methods(["adam", "rmsprop", "kfac"], "digits", None)[1].items()}


def _fake_training(monkeypatch, calls):
    """Training replaced by a curve that depends on the rate: Adam's best is its tuned rate, RMSProp's 10x its
    tuned rate (the grid's edge); epochs of 1.5 s (3 s at 0.1x its rate), where the calibration says 1 s."""

    def train(m, lr, data, cfg, progress=True):
        calls.append((m.name, lr, cfg.epochs, cfg.warmup_epochs))
        best = TUNED[m.name] * (10 if m.name == "rmsprop" else 1)
        slow = 3.0 if lr < TUNED[m.name] / 5 else 1.5  # the runs at 0.1x ran beside other load
        return [
            {"epoch": e, "train_time": slow * e, "train_loss": 100 / e + 10 * abs(math.log10(lr / best))}
            for e in range(1, cfg.epochs + 1)
        ]

    monkeypatch.setattr(equal_time, "train_method", train)
    monkeypatch.setattr(equal_time, "mean_step_time", lambda m, *a, **k: 1.0 / 3)  # 3 steps per epoch here


def test_each_budget_tunes_the_rate_on_a_grid_and_other_seeds_reuse_the_choice(tmp_path, monkeypatch):
    data, calls = load_autoencoder_data(CFG), []
    _fake_training(monkeypatch, calls)
    lrs = TUNED
    kw = {"multiples": (1, 2), "reference_epochs": 12, "progress": False, "command": "t"}
    res = run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1, 10), **kw)
    # no warm-up in any run, even at 12 and 24 epochs (5% would make one epoch at lr 0)
    assert {c[3] for c in calls} == {0} and res["config"]["warmup_epochs"] == 0
    # B = 12 epochs of 1.5 s = 18 s. Within B the calibration's 1 s fits 18 epochs (they overrun); within 2B the
    # 1.5 s measured within B (the median: the slow 0.1x runs do not move it) fits 24, inside the budget
    assert res["budget_s"] == 18 and res["epoch_time_fitted"]["2B"] == {"adam": 1.5, "rmsprop": 1.5}
    for epochs in (18, 24):  # within B, within 2B
        for name in ("adam", "rmsprop"):
            assert {c[1] for c in calls if c[0] == name and c[2] == epochs} >= {lrs[name] * f for f in (0.1, 10)}
    assert res["runs"]["1B/adam"]["overran"] and not res["runs"]["2B/adam"]["overran"]
    for k in ("1B", "2B"):
        assert res["chosen"][f"{k}/adam"] == {"factor": 1, "lr": lrs["adam"], "edge": False, "from": None}
        assert res["chosen"][f"{k}/rmsprop"]["factor"] == 10 and res["chosen"][f"{k}/rmsprop"]["edge"]
    assert bench.chosen_run(res, 2, "rmsprop") is res["runs"]["2B/rmsprop@10"]
    report = (tmp_path / "s0" / "report.md").read_text()
    assert "loss at each lr factor" in report and "Learning rates tuned on each budget" in report
    # another seed takes the choices and runs only them
    calls.clear()
    other = run_equal_time_benchmark(
        ["adam", "rmsprop"], replace(CFG, seed=1), data, tmp_path / "s1", lrs_from=tmp_path / "s0", **kw
    )
    assert {k: v["factor"] for k, v in other["chosen"].items()} == {k: v["factor"] for k, v in res["chosen"].items()}
    ran = [(c[0], c[1], c[2]) for c in calls]
    assert len(ran) == 1 + 4  # the reference, then one run per budget and method at its chosen rate
    assert ("rmsprop", lrs["rmsprop"] * 10, 18) in ran and ("adam", lrs["adam"], 24) in ran
    assert "as chosen on each budget in" in (tmp_path / "s1" / "report.md").read_text()


def test_grid_arguments_are_checked_before_anything_is_written(tmp_path, monkeypatch):
    data = load_autoencoder_data(CFG)
    _fake_training(monkeypatch, [])
    with pytest.raises(ValueError, match="lr_factors"):
        run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "a", lr_factors=(1, 1))
    with pytest.raises(ValueError, match="not both"):
        run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "a", lr_factors=(0.1, 1), lrs_from=tmp_path)
    with pytest.raises(ValueError, match="no equal-time record"):
        run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "a", lrs_from=tmp_path / "nope")
    small = {"multiples": (1,), "reference_epochs": 2, "progress": False}
    run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1), **small)
    with pytest.raises(ValueError, match="does not hold a choice for every budget"):  # kfac was not tuned there
        run_equal_time_benchmark(
            ["adam", "rmsprop", "kfac"], CFG, data, tmp_path / "a", lrs_from=tmp_path / "s0", **small
        )
    assert not (tmp_path / "a").exists()
