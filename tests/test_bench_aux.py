"""``layerwise bench aux`` end to end on the offline digits set, tiny model (seconds)."""

import json

import pytest

from layerwise_bench.cli import main
from layerwise_bench.deep_mlp._aux_bench import tap_layers

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data

TINY = [
    "--dataset",
    "digits",
    "--depth",
    "4",
    "--width",
    "16",
    "--heads",
    "2",
    "--seeds",
    "0",
    "--no-progress",
    "--threads",
    "1",
]


def test_results_report_resume_and_naive_collapse(tmp_path, capsys):
    out = tmp_path / "r"
    # batch 32: 45 steps per epoch, so naive's negative weights pass the 100-step "useless" window in epoch 3
    args = [
        "bench",
        "aux",
        "--methods",
        "none,equal,naive,uncertainty",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr",
        "0.01",
        "--target-acc",
        "0.15",
        "--out",
        str(out),
        *TINY,
    ]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "aux" and res["command"] == "layerwise " + " ".join(args)
    assert res["config"]["depth"] == 4 and res["config"]["epochs"] == 3 and res["seeds"] == [0]
    assert set(res["runs"]) == {"none/0", "equal/0", "naive/0", "uncertainty/0"}
    for key, run in res["runs"].items():
        assert run["status"] == "complete", key
        terms = ["main"] if key == "none/0" else ["main", "aux3", "aux1"]  # heads after layers 1, 3; deepest first
        assert run["terms"] == terms and len(run["records"]) == 3 == len(run["weights"])
        for epoch, rec in enumerate(run["records"], 1):
            assert rec["epoch"] == epoch and 0 <= rec["test_acc"] <= 1 and rec["train_time"] > 0
            assert rec["train_main_loss"] > 0 and set(rec["aux_losses"]) == set(terms[1:])
        assert set(run["weights"][0]) == set(terms)
    assert res["runs"]["equal/0"]["final_weights"] == {"main": 1.0, "aux3": 1.0, "aux1": 1.0}
    assert res["runs"]["equal/0"]["useless_warnings"] == []
    naive = res["runs"]["naive/0"]
    assert "Naive weighting trains the weights on the total loss" in naive["construction_warnings"][0]
    # the documented collapse: the auxiliary weights (initialised at 0.1) only go down, below zero
    for t in ("aux3", "aux1"):
        assert (
            naive["final_weights"][t] < naive["weights"][2][t] < naive["weights"][1][t] < naive["weights"][0][t] < 0.1
        )
        assert naive["final_weights"][t] < 0
    assert naive["final_weights"]["main"] == 1.0
    first = naive["useless_warnings"][0]
    assert (
        "this loss contributes nothing; consider removing it" in first["message"]
        or "this loss is being MAXIMISED" in first["message"]
    )
    assert 45 * (first["epoch"] - 1) + first["step"] >= 100
    report = (out / "report.md").read_text()
    for m in ("none", "equal", "naive", "uncertainty"):
        assert f"| {m} |" in report
    assert "best learned weighting by median epochs to 0.15 test accuracy" in report and "`uncertainty`" in report
    assert "**Verdict: the best learned weighting" in report and "seed 0 (complete): final weights main 1" in report
    for png in ("test_acc.png", "train_loss.png", "weights.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # an existing run is kept; --resume keeps the finished (method, seed) entries; a changed config is refused
    assert main(args) == 1 and "already holds a run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["runs"] == res["runs"] and again["resumed_with"] == [res["command"] + " --resume"]
    assert main([*args, "--epochs", "4", "--resume"]) == 1
    assert "Resume with the same arguments" in capsys.readouterr().err


def test_tap_layers_and_bad_arguments(tmp_path, capsys):
    assert tap_layers(20, 3) == [5, 10, 15] and tap_layers(4, 2) == [1, 3] and tap_layers(6, 1) == [3]
    with pytest.raises(ValueError, match="heads=4 for depth=4"):
        tap_layers(4, 4)
    with pytest.raises(SystemExit):
        main(["bench", "aux", "--methods", "equal,foo", "--out", str(tmp_path / "o")])
    assert "unknown method 'foo'; expected some of: none" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "aux", "--target-acc", "1.5", "--out", str(tmp_path / "o")])
    assert "expected a number in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
