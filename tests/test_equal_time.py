"""``layerwise bench equal-time``: the same training-time budget for every method, each run on the clock."""

import json
import math
from dataclasses import replace

import pytest

import layerwise_bench as bench
import layerwise_bench.autoencoder._equal_time as equal_time
from layerwise_bench import AutoencoderConfig, load_autoencoder_data, run_equal_time_benchmark
from layerwise_bench.core._slow_runs import run_step_time
from layerwise_bench.core._tuned import prepare_methods

pytestmark = pytest.mark.bench  # end-to-end: a benchmark on tiny data

CFG = AutoencoderConfig(dataset="digits", subset=300, batch_size=100, evaluate_test=False)


def test_every_method_trains_on_the_clock_within_each_budget_and_is_scored_where_it_stopped(tmp_path, monkeypatch):
    data = load_autoencoder_data(CFG)
    out = tmp_path / "et"
    small = {"multiples": (1, 2), "reference_epochs": 3, "progress": False, "command": "test"}
    res = run_equal_time_benchmark(["adam", "rmsprop", "kfac"], CFG, data, out, **small)
    budget = res["budget_s"]
    assert budget == res["runs"]["reference/rmsprop"]["records"][-1]["train_time"]
    assert res["config"]["schedule"] == "time" and "epoch_time_estimate" not in res
    assert sorted(res["runs"]) == sorted(["reference/rmsprop"] + [f"{k}B/{n}" for k in (1, 2) for n in res["lrs"]])
    for key, run in res["runs"].items():
        if key.startswith("reference/"):
            assert [r["epoch"] for r in run["records"]] == [1, 2, 3] and "within" not in run
            continue
        k, recs = float(key.split("B/")[0]), run["records"]
        assert run["budget_s"] == k * budget and recs[-1]["stopped"] and not any(r["stopped"] for r in recs[:-1])
        assert run["within"] == recs[-1] and run["epochs"] == recs[-1]["epoch"]
        assert run["over_s"] == max(0.0, recs[-1]["train_time"] - k * budget)
        assert recs[-1]["train_time"] > 0.5 * k * budget  # it used its budget, not a guess of it
        assert bench.measured_epoch_time(run) == recs[-1]["train_time"] / recs[-1]["epoch"]
    report = (out / "report.md").read_text()
    assert "## Within 1·B" in report and "## Within 2·B" in report and "| 1 |" in report and "over by" in report
    assert (out / "loss_vs_time.png").read_bytes()[:4] == b"\x89PNG"
    # resuming keeps the budget and every finished run: nothing is trained again
    monkeypatch.setattr(equal_time, "train_method", lambda *a, **k: pytest.fail("a finished run was repeated"))
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


def _fake_training(monkeypatch, calls, bests=None):
    """Training replaced by a curve that depends on the rate: Adam's best is its tuned rate, RMSProp's 10x its
    tuned rate (the grid's edge; ``bests`` sets other multiples); epochs of 1.5 s, and a run on the clock stops
    at its budget."""
    bests = bests or {"adam": 1, "rmsprop": 10}

    def train(m, lr, data, cfg, progress=True, budget_s=None):
        calls.append((m.name, lr, budget_s, cfg.warmup_epochs))
        best = TUNED[m.name] * bests[m.name]
        ends = [1.5 * e for e in range(1, cfg.epochs + 1)] if budget_s is None else [1.5, budget_s]
        if budget_s is not None and m.name == "adam":
            ends[-1] += 0.25  # its last step passed the budget (a periodic expensive step, say)
        return [
            {"epoch": t / 1.5, "train_time": t, "train_loss": 100 / t + 10 * abs(math.log10(lr / best))} for t in ends
        ]

    monkeypatch.setattr(equal_time, "train_method", train)


def test_each_budget_tunes_the_rate_on_a_grid_and_other_seeds_reuse_the_choice(tmp_path, monkeypatch):
    data, calls = load_autoencoder_data(CFG), []
    _fake_training(monkeypatch, calls)
    lrs = TUNED
    kw = {"multiples": (1, 2), "reference_epochs": 12, "progress": False, "command": "t"}
    res = run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1, 10), **kw)
    # no warm-up in any run (5% of 12 epochs would make one epoch at lr 0)
    assert {c[3] for c in calls} == {0} and res["config"]["warmup_epochs"] == 0
    # B = 12 epochs of 1.5 s = 18 s; every method runs every factor on the clock within B and within 2B, and
    # RMSProp's best on the edge (10x) extends its grid to 100x, which is worse: 10x is chosen, inside
    assert res["budget_s"] == 18 and calls[0] == ("rmsprop", lrs["rmsprop"], None, 0)
    for budget in (18, 36):
        for name, grid in (("adam", (0.1, 1, 10)), ("rmsprop", (0.1, 1, 10, 100))):
            assert sorted(c[1] for c in calls if c[0] == name and c[2] == budget) == pytest.approx(
                [lrs[name] * f for f in grid]
            )
    assert res["runs"]["2B/rmsprop"]["within"]["train_time"] == 36 and res["runs"]["2B/rmsprop"]["over_s"] == 0
    assert res["runs"]["2B/adam"]["within"]["train_time"] == 36.25 and res["runs"]["2B/adam"]["over_s"] == 0.25
    for k in ("1B", "2B"):
        assert res["chosen"][f"{k}/adam"] == {
            "factor": 1,
            "lr": lrs["adam"],
            "edge": False,
            "factors": [0.1, 1, 10],
            "from": None,
        }
        rms = res["chosen"][f"{k}/rmsprop"]
        assert (rms["factor"], rms["edge"], rms["factors"]) == (10, False, [0.1, 1, 10, 100])
    assert bench.chosen_run(res, 2, "rmsprop") is res["runs"]["2B/rmsprop@10"]
    report = (tmp_path / "s0" / "report.md").read_text()
    assert "loss at each lr factor" in report and "Learning rates tuned on each budget" in report
    assert "| 36.2 | 0.25 | complete |" in report  # Adam within 2B: time used, over by
    assert "10: 5.56, 100: 15.56 |" in report  # RMSProp's extended grid is listed
    # another seed takes the choices and runs only them
    calls.clear()
    other = run_equal_time_benchmark(
        ["adam", "rmsprop"], replace(CFG, seed=1), data, tmp_path / "s1", lrs_from=tmp_path / "s0", **kw
    )
    assert {k: v["factor"] for k, v in other["chosen"].items()} == {k: v["factor"] for k, v in res["chosen"].items()}
    ran = [(c[0], c[1], c[2]) for c in calls]
    assert len(ran) == 1 + 4  # the reference, then one run per budget and method at its chosen rate
    assert ("rmsprop", lrs["rmsprop"] * 10, 18) in ran and ("adam", lrs["adam"], 36) in ran
    assert "as chosen on each budget in" in (tmp_path / "s1" / "report.md").read_text()


def test_a_best_rate_on_the_edge_extends_the_grid_at_most_twice_each_way(tmp_path, monkeypatch):
    data, calls = load_autoencoder_data(CFG), []
    _fake_training(monkeypatch, calls, bests={"adam": 0.001, "rmsprop": 1, "kfac": 1e4})
    kw = {"multiples": (1,), "reference_epochs": 4, "progress": False}
    res = run_equal_time_benchmark(
        ["adam", "rmsprop", "kfac"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1, 10), **kw
    )
    adam, rms, kfac = (res["chosen"][f"1B/{n}"] for n in ("adam", "rmsprop", "kfac"))
    assert (adam["factor"], adam["edge"], adam["factors"]) == (0.001, True, [0.001, 0.01, 0.1, 1, 10])
    assert (rms["factor"], rms["edge"], rms["factors"]) == (1, False, [0.1, 1, 10])
    assert (kfac["factor"], kfac["edge"], kfac["factors"]) == (1000, True, [0.1, 1, 10, 100, 1000])
    assert "1B/adam@0.001" in res["runs"] and "(edge)" in (tmp_path / "s0" / "report.md").read_text()


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
    old = json.loads((tmp_path / "s0" / "results.json").read_text())
    for change, match in [({"schedule": None}, "epoch-count fit"), ({"reference_epochs": 3}, "other settings")]:
        (tmp_path / "old").mkdir(exist_ok=True)
        edited = {**old, "config": {**old["config"], **change}}
        edited.pop("sha256", None)  # an edit by hand, on purpose
        (tmp_path / "old" / "results.json").write_text(json.dumps(edited))
        with pytest.raises(ValueError, match=match):
            run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "a", lrs_from=tmp_path / "old", **small)
    with pytest.raises(ValueError, match="does not hold a choice for every budget"):  # kfac was not tuned there
        run_equal_time_benchmark(
            ["adam", "rmsprop", "kfac"], CFG, data, tmp_path / "a", lrs_from=tmp_path / "s0", **small
        )
    assert not (tmp_path / "a").exists()


def test_a_slowed_run_runs_once_more_and_its_budget_is_chosen_again(tmp_path, monkeypatch):
    """Step 5: a run whose median step is >10% above its method's median ran on a slowed machine; it is run once
    more, the first run kept, and its budget's rate chosen again from the runs as they now stand."""
    data, calls = load_autoencoder_data(CFG), []
    slow = {  # (method, factor, budget or None for the reference, call number) -> median step time (s)
        ("adam", 1, 18, 1): 0.13,  # slowed: the chosen rate's run, which then loses to the grid's edge
        ("adam", 10, 36, 1): 0.109,  # 9% above: within the tolerance, not run again
        ("rmsprop", 10, 36, 1): 0.15,  # slowed twice: run again once, then listed as still slowed
        ("rmsprop", 10, 36, 2): 0.15,
        ("rmsprop", 1, None, 1): 0.2,  # the reference: never run again (B is what it measured)
        # RMSProp's best (10x, the edge) was slowed and lost to 1x; run again it wins and extends the grid to
        # 100x, a run that is itself slowed: judged in the next round and run again too
        ("rmsprop", 10, 18, 1): 0.13,
        ("rmsprop", 100, 18, 1): 0.13,
    }
    seen: dict = {}

    def train(m, lr, data, cfg, progress=True, budget_s=None):
        factor = float(f"{lr / TUNED[m.name]:.3g}")
        n = seen[m.name, factor, budget_s] = seen.get((m.name, factor, budget_s), 0) + 1
        calls.append((m.name, factor, budget_s, n))
        step = slow.get((m.name, factor, budget_s, n), 0.1)
        best = TUNED[m.name] * {"adam": 1.1, "rmsprop": 10}[m.name]  # Adam: 10x beats 0.1x
        penalty = 20 if step > 0.12 else 0  # fewer steps in the budget: a worse loss
        ends = [1.5 * e for e in range(1, cfg.epochs + 1)] if budget_s is None else [1.5, budget_s]
        return [
            {
                "epoch": t / 1.5,
                "train_time": t,
                "step_time_median": step,
                "train_loss": 100 / t + 10 * abs(math.log10(lr / best)) + penalty,
            }
            for t in ends
        ]

    monkeypatch.setattr(equal_time, "train_method", train)
    kw = {"multiples": (1, 2), "reference_epochs": 12, "progress": False, "command": "t"}
    res = run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1, 10), **kw)
    twice = sorted((c[0], c[1], c[2]) for c in calls if c[3] == 2)
    assert twice == [("adam", 1, 18), ("rmsprop", 10, 18), ("rmsprop", 10, 36), ("rmsprop", 100, 18)]
    rms = res["chosen"]["1B/rmsprop"]
    assert (rms["factor"], rms["edge"], rms["factors"]) == (10, False, [0.1, 1, 10, 100])
    assert [c[:3] for c in calls].index(("rmsprop", 100, 18)) > [c[:3] for c in calls].index(("rmsprop", 10, 36))
    again = res["runs"]["1B/adam"]
    first = again["first_run"]
    assert first["step_time_s"] == 0.13 and first["method_median_s"] == 0.1 and first["within"]["train_loss"] > 20
    assert run_step_time(again) == 0.1 and "first_run" not in first
    # the first run had lost to the edge (10x), which extended the grid to 100x; run again, 1x is chosen
    assert res["chosen"]["1B/adam"]["factor"] == 1 and res["chosen"]["1B/adam"]["factors"] == [0.1, 1, 10, 100]
    assert "first_run" not in res["runs"]["2B/adam@10"] and "first_run" not in res["runs"]["reference/rmsprop"]
    assert res["slow_tolerance"] == 1.1 and sorted(res["slowed"]) == ["2B/rmsprop@10", "reference/rmsprop"]
    assert res["chosen"]["2B/rmsprop"]["factor"] == 1  # its slowed 10x run loses, now for good, and is listed
    report = (tmp_path / "s0" / "report.md").read_text()
    assert "## Slowed runs" in report and "| 1B/adam | 130 | 100 | 100 |" in report
    assert "Still slowed" in report and "2B/rmsprop@10 150 ms against 100 ms" in report
    assert "| complete (run again) |" in report and res["slow_pooled"] is False
    # resuming runs nothing again: a run already repeated is not repeated twice, the reference never
    monkeypatch.setattr(equal_time, "train_method", lambda *a, **k: pytest.fail("a finished run was repeated"))
    assert (
        run_equal_time_benchmark(
            ["adam", "rmsprop"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1, 10), resume=True, **kw
        )["slowed"]
        == res["slowed"]
    )
    # another seed runs one rate per budget: 2 runs of Adam, judged with the tuned seed's runs pooled in
    monkeypatch.setattr(equal_time, "train_method", train)
    calls.clear(), seen.clear(), slow.clear()
    slow[("adam", 1, 36, 1)] = 0.2
    other = run_equal_time_benchmark(
        ["adam", "rmsprop"], replace(CFG, seed=1), data, tmp_path / "s1", lrs_from=tmp_path / "s0", **kw
    )
    assert [c for c in calls if c[3] == 2] == [("adam", 1, 36, 2)] and other["slowed"] == {}
    assert other["runs"]["2B/adam"]["first_run"]["method_median_s"] == 0.1 and other["slow_pooled"] is True
    # ... but not with a record measured on another machine or thread count: two runs cannot be judged
    theirs = json.loads((tmp_path / "s0" / "results.json").read_text())
    theirs["environment"]["torch_threads"] += 1
    theirs.pop("sha256", None)  # an edit by hand, on purpose
    (tmp_path / "s0x").mkdir()
    (tmp_path / "s0x" / "results.json").write_text(json.dumps(theirs))
    calls.clear(), seen.clear()
    lone = run_equal_time_benchmark(
        ["adam", "rmsprop"], replace(CFG, seed=2), data, tmp_path / "s2", lrs_from=tmp_path / "s0x", **kw
    )
    assert [c for c in calls if c[3] == 2] == [] and lone["slow_pooled"] is False and lone["slowed"] == {}


def test_when_every_rate_diverges_the_first_factor_is_kept_and_the_grid_extended_once(tmp_path, monkeypatch):
    """All losses tie (inf): the first factor run wins, as it always did; the one extension past it is worse
    (also inf), so the grid stops there."""
    data, calls, tried = load_autoencoder_data(CFG), [], []
    _fake_training(monkeypatch, calls)
    fake = equal_time.train_method

    def train(m, lr, data, cfg, progress=True, budget_s=None):
        if m.name == "adam" and budget_s is not None:
            tried.append(float(f"{lr / TUNED['adam']:.3g}"))
            raise equal_time.TrainingDiverged("loss=nan")
        return fake(m, lr, data, cfg, progress, budget_s)

    monkeypatch.setattr(equal_time, "train_method", train)
    kw = {"multiples": (1,), "reference_epochs": 4, "progress": False}
    res = run_equal_time_benchmark(["adam", "rmsprop"], CFG, data, tmp_path / "s0", lr_factors=(0.1, 1, 10), **kw)
    assert tried == [0.1, 1, 10, 0.01]
    adam = res["chosen"]["1B/adam"]
    assert (adam["factor"], adam["edge"], adam["factors"]) == (0.1, False, [0.01, 0.1, 1, 10])
    assert res["runs"]["1B/adam@0.1"]["status"] == "diverged" and res["slowed"] == {}
