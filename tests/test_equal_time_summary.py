"""Several equal-time records (one per seed) read together: losses within each budget across seeds, LocoProp's
best configuration against the best other method, and the step speed-up it would need."""

import json

import pytest

from layerwise_bench import rebuild_report, summarize_equal_time, write_equal_time_summary
from layerwise_bench.cli import main

EPOCH_TIME = {"rmsprop": 1.0, "kron": 2.0, "locoprop-x": 5.0}


def _record(seed: int, shift: float, budget: float = 10.0) -> dict:
    """An equal-time record by hand: B = 10 s; LocoProp's epochs cost 5 s, Kron's 2 s, RMSProp's 1 s; every run
    stops at its budget, at the end of an epoch."""
    curves = {  # (multiple, method) -> training loss after each epoch
        (1, "rmsprop"): [100 - 3 * e for e in range(1, 11)],
        (1, "kron"): [100 - 8 * e for e in range(1, 6)],  # 60 within B
        (1, "locoprop-x"): [100.0, 80.0],
        (3, "rmsprop"): [100 - 1.5 * e for e in range(1, 31)],
        (3, "kron"): [65 - e for e in range(1, 16)],  # 50 within 3B
        (3, "locoprop-x"): [100.0, 80.0, 65.0, 55.0, 50.0, 45.0],
    }
    runs = {}
    for (k, name), losses in curves.items():
        t = EPOCH_TIME[name]
        records = [
            {"epoch": e, "train_time": e * t, "train_loss": x + shift, "stopped": e == len(losses)}
            for e, x in enumerate(losses, 1)
        ]
        runs[f"{k}B/{name}"] = {
            "method": name,
            "epochs": len(records),
            "status": "complete",
            "records": records,
            "within": records[-1],
            "over_s": 0.0,
        }
    runs["reference/rmsprop"] = dict(runs["1B/rmsprop"])
    return {
        "benchmark": "equal-time",
        "command": f"layerwise bench equal-time --seed {seed}",
        "config": {
            "dataset": "mnist",
            "seed": seed,
            "multiples": [1, 3],
            "reference": "rmsprop",
            "reference_epochs": 10,
            "schedule": "time",
        },
        "budget_s": budget,
        "lrs": {n: {"lr": 1e-3, "source": "test", "hparams": {}} for n in EPOCH_TIME},
        "runs": runs,
    }


def test_losses_within_budget_are_read_across_seeds_and_locoprop_is_set_against_the_best_baseline():
    s = summarize_equal_time([_record(0, 0.0), _record(1, 2.0)])
    one, three = s["by_multiple"]["1"], s["by_multiple"]["3"]
    assert one["ranked"] == ["kron", "rmsprop", "locoprop-x"]
    assert one["rows"]["kron"]["loss"] == {"mean": 61.0, "min": 60.0, "max": 62.0, "n": 2, "values": [60.0, 62.0]}
    lp = one["locoprop"]
    assert (lp["best"], lp["baseline"], lp["wins"], lp["seeds_compared"]) == ("locoprop-x", "kron", 0, 2)
    assert lp["gap"]["mean"] == pytest.approx(20.0) and lp["gap_pct"] == pytest.approx(100 * 20 / 61)
    # Kron's 60 (62) is first reached by LocoProp after 20 s (epoch 4 of its 3B run): in 10 s -> 2x faster
    assert lp["speedup_needed"]["values"] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert lp["epoch_time_vs_reference"] == 5.0 and lp["epoch_time_vs_baseline"] == 2.5
    # within 3B LocoProp leads (45 against Kron's 50); it reached 50 at epoch 5, 25 s of the 30 s
    assert three["ranked"][0] == "locoprop-x" and three["locoprop"]["wins"] == 2
    assert three["locoprop"]["speedup_needed"]["mean"] == pytest.approx(25 / 30)


def test_a_loss_locoprop_never_reaches_is_counted_not_guessed():
    rec = _record(0, 0.0)
    for e in rec["runs"].values():
        if e["method"] == "kron":
            for r in e["records"]:
                r["train_loss"] -= 30  # Kron ends at 30 within B: no LocoProp run gets there
            e["within"] = e["records"][-1]
    s = summarize_equal_time([rec, _record(1, 0.0)])
    lp = s["by_multiple"]["1"]["locoprop"]
    assert lp["baseline"] == "kron" and lp["unreached"] == 1  # seed 0: no LocoProp run gets to 30
    assert lp["speedup_needed"]["values"] == [pytest.approx(2.0)]  # seed 1 only
    # in seed 0 its longest run (3B) trained 30 s without getting there: more than 30 s in 10 s is needed
    assert lp["speedup_at_least"]["values"] == [pytest.approx(3.0)]


def test_a_loss_not_reached_even_in_the_longest_run_bounds_no_speed_up(tmp_path):
    """Within the largest budget LocoProp's longest run is that budget's own: 'more than 1x faster' would say
    nothing, so the report says the per-step loss stands in the way too."""
    recs = [_record(0, 0.0), _record(1, 0.0)]
    for rec in recs:
        e = rec["runs"]["3B/kron"]
        for r in e["records"]:
            r["train_loss"] -= 20  # Kron ends at 30 within 3B; LocoProp's 3B run ends at 45
        e["within"] = e["records"][-1]
    lp = summarize_equal_time(recs)["by_multiple"]["3"]["locoprop"]
    assert lp["unreached"] == 2 and lp["speedup_at_least"]["values"] == [1.0, 1.0]
    write_equal_time_summary(recs, tmp_path, plots=False)
    text = (tmp_path / "report.md").read_text()
    assert "In 2 seed(s) none of its runs gets there, this budget's being its longest" in text
    assert "more than 1.00× faster" not in text and ".  " not in text


def test_a_method_that_diverged_in_a_seed_ranks_after_those_scored_in_every_seed():
    bad = _record(1, 0.0)
    bad["runs"]["1B/kron"].update(status="diverged", records=[], within=None)
    s = summarize_equal_time([_record(0, 0.0), bad])
    one = s["by_multiple"]["1"]
    assert one["rows"]["kron"]["loss"]["n"] == 1 and one["rows"]["kron"]["failed"] == 1
    assert one["ranked"] == ["rmsprop", "locoprop-x", "kron"]  # kron's 60 in one seed does not outrank the rest
    assert one["locoprop"]["baseline"] == "rmsprop"


def test_a_scored_run_still_slowed_is_counted_and_marked(tmp_path):
    slowed = _record(1, 0.0)
    slowed["slowed"] = {"1B/kron": {"step_time_s": 0.6, "method_median_s": 0.5}, "3B/kron@3.16": {}}
    runs = [_record(0, 0.0), slowed]
    s = summarize_equal_time(runs)
    assert s["by_multiple"]["1"]["rows"]["kron"]["slowed"] == 1  # its scored run (factor 1) within B
    assert s["by_multiple"]["3"]["rows"]["kron"]["slowed"] == 0  # a run not scored is not counted
    write_equal_time_summary(runs, tmp_path, plots=False)
    assert "diverged or failed; slowed |" in (tmp_path / "report.md").read_text()
    assert "| 1 slowed |" in (tmp_path / "report.md").read_text()


def test_no_locoprop_comparison_without_a_scored_locoprop_method():
    recs = [_record(0, 0.0), _record(1, 0.0)]
    for r in recs:
        for k in (1, 3):
            r["runs"][f"{k}B/locoprop-x"].update(within=None)
    assert "locoprop" not in summarize_equal_time(recs)["by_multiple"]["1"]


def test_records_that_differ_in_more_than_the_seed_are_refused():
    other = _record(1, 0.0)
    other["config"]["reference_epochs"] = 5
    with pytest.raises(ValueError, match="differ in 'reference_epochs'"):
        summarize_equal_time([_record(0, 0.0), other])
    with pytest.raises(ValueError, match="two or more equal-time records"):
        summarize_equal_time([_record(0, 0.0)])
    fewer = _record(1, 0.0)
    del fewer["lrs"]["kron"]
    with pytest.raises(ValueError, match="differ in their methods or learning rates"):
        summarize_equal_time([_record(0, 0.0), fewer])
    with pytest.raises(ValueError, match="same seed"):
        summarize_equal_time([_record(0, 0.0), _record(0, 1.0)])


def test_layerwise_report_reads_seed_directories_into_one_report(tmp_path, capsys):
    dirs = []
    for seed in (0, 1, 2):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(_record(seed, float(seed))))
        dirs.append(d)
    before = {d: (d / "results.json").read_bytes() for d in dirs}
    # without --out the combined report would replace seed 0's own: refused, nothing written
    assert main(["report", *map(str, dirs)]) == 1
    assert "pass --out DIR" in capsys.readouterr().err and not (dirs[0] / "report.md").exists()
    path = rebuild_report(dirs, tmp_path)
    text = path.read_text()
    assert "3 seeds" in text and "[seed 1](s1/report.md)" in text
    assert "| 1 | kron | 0.001 | 5.00 | 2.00 | 61.00 [60.00, 62.00] | +0.0% | 0.00 |  |" in text
    assert "ends at 81.00 [80.00, 82.00] against 61.00 [60.00, 62.00]" in text and "lower in 0 of 3 seeds" in text
    assert "its step would have to be about 2.00× faster (estimated in the 3 of 3 seeds" in text
    assert "One of its runs reaches `kron`'s loss after 0.83 of the budget" in text
    with pytest.raises(ValueError, match="one of the seeds' directories"):
        rebuild_report(dirs, dirs[1])
    assert (tmp_path / "loss_within_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert all((d / "results.json").read_bytes() == before[d] for d in dirs)


def test_seeds_of_a_workload_scored_on_test_loss_are_read_by_that_score(tmp_path):
    """The committed lm-bytes seeds score ``test_loss``: the summary ranks and reports that, not ``train_loss``,
    names the workload, and prints losses near 1.5 with enough digits to tell the methods apart."""
    from pathlib import Path

    from layerwise_bench.autoencoder._equal_time_report import chosen_run
    from layerwise_bench.core._io import read_json

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    dirs = [root / f"equal-time-lm-bytes-locoprop-cpu{s}" for s in ("", "-s1", "-s2")]
    runs = [read_json(d / "results.json") for d in dirs]
    s = summarize_equal_time(runs)
    rows = s["by_multiple"]["1"]["rows"]
    for name, row in rows.items():
        want = [chosen_run(r, 1, name)["within"]["test_loss"] for r in runs]
        assert row["loss"]["values"] == pytest.approx(want)
    path = write_equal_time_summary(runs, tmp_path, dirs, plots=False)
    text = path.read_text()
    assert text.startswith("# Equal wall-clock: lm-bytes (") and "its score is its `test_loss`" in text
    assert "| 2 | adamw | 0.00948 |" in text and "1.509 [1.494, 1.533]" in text
