"""``layerwise bench similarity`` end to end on the offline digits set (seconds), and its measures."""

import json

import pytest
import torch

from layerwise_bench.cli import main
from layerwise_bench.deep_mlp._depth_model import build_mlp
from layerwise_bench.deep_mlp._similarity import hidden_activations, verdict

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data


def test_hidden_activations_are_the_act_outputs_then_the_logits() -> None:
    torch.manual_seed(0)
    model = build_mlp(6, 3, 2, 5, "tanh")
    x = torch.randn(7, 6)
    acts = hidden_activations(model, x)
    torch.testing.assert_close(acts[0], torch.tanh(model[0](x)))
    torch.testing.assert_close(acts[1], torch.tanh(model[2](acts[0])))
    torch.testing.assert_close(acts[2], model(x))


def test_results_report_and_measures(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    args = [
        "bench",
        "similarity",
        "--out",
        str(out),
        "--dataset",
        "digits",
        "--depth",
        "2",
        "--width",
        "16",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "similarity" and res["depth"] == 2 and res["test_examples"] == 359
    assert list(res["runs"]) == ["backprop", "backprop-seed+1", "decoupled-forward", "decoupled"]
    assert "vs_backprop" not in res["runs"]["backprop"]
    ref_acc = res["runs"]["backprop"]["records"][-1]["test_acc"]
    for name in ("backprop-seed+1", "decoupled-forward", "decoupled"):
        v = res["runs"][name]["vs_backprop"]
        assert len(v["cka"]) == 3 and all(0 <= c <= 1 + 1e-9 for c in v["cka"])
        assert len(v["weight_distance"]) == 3
        assert v["test_gap_points"] == pytest.approx(100 * (ref_acc - res["runs"][name]["records"][-1]["test_acc"]))
    # same initial weights as the reference: far closer in parameters than backprop from another seed
    other = res["runs"]["backprop-seed+1"]["vs_backprop"]["param_distance"]
    assert res["runs"]["decoupled-forward"]["vs_backprop"]["param_distance"] < other / 5
    report = (out / "report.md").read_text()
    assert "## Verdict" in report and "| decoupled-forward |" in report and "CKA h2" in report
    assert all(line in report for line in verdict(res)) and verdict(res)[0] in printed
    assert (out / "similarity.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 1 and "already holds a run" in capsys.readouterr().err


def test_verdict_reads_the_gap() -> None:
    runs = {
        "decoupled-forward": {"vs_backprop": {"test_gap_points": 1.2}},
        "decoupled": {"vs_backprop": {"test_gap_points": 4.0}},
    }
    lines = verdict({"runs": runs})
    assert "**within 1.5 points**" in lines[0] and "**NOT within 1.5 points**" in lines[1]
