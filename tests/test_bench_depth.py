"""``layerwise bench depth`` end to end on the offline digits set, tiny model (seconds)."""

import json
import math

import pytest
import torch

from layerwise_bench import run_depth_benchmark as bench_run
from layerwise_bench.cli import main
from layerwise_bench.deep_mlp._depth_methods import DEPTH_METHODS, grad_ratio
from layerwise_bench.deep_mlp._depth_model import blocks_of, build_mlp, linear_layers
from layerwise_bench.deep_mlp._depth_report import acceptance, accuracy_line, epoch_ratios, ratio_without_penalty

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data

TINY = [
    "--dataset",
    "digits",
    "--depths",
    "4",
    "--width",
    "16",
    "--epochs",
    "1",
    "--ds-every",
    "2",
    "--threads",
    "1",
    "--no-progress",
]


def test_results_report_and_resume(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["bench", "depth", "--activations", "sigmoid", "--out", str(out), *TINY]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "depth" and res["command"] == "layerwise " + " ".join(args)
    assert res["config"]["epochs"] == 1 and res["config"]["width"] == 16 and res["train_examples"] == 1438
    assert set(res["runs"]) == {f"4/sigmoid/{m}" for m in DEPTH_METHODS}
    for key, run in res["runs"].items():
        assert run["status"] == "complete", (key, run.get("error"))
        (rec,) = run["records"]
        assert rec["epoch"] == 1 and rec["train_time"] > 0 and rec["train_loss"] > 0
        assert 0 <= rec["train_acc"] <= 1 and 0 <= rec["test_acc"] <= 1
        assert set(run["grad_norms"]) == {"first_step", "epoch_1", "end"}
        for g in run["grad_norms"].values():
            assert len(g["norms"]) == 5 == run["linear_layers"]  # depth 4: four hidden Linear layers + the output
            assert all(v >= 0 and math.isfinite(v) for v in g["norms"])
            if g["zero_layers"] == 0:
                assert g["ratio"] == pytest.approx(max(g["norms"]) / min(g["norms"]))
            else:
                assert g["ratio"] is None
        assert run["grad_norms"]["end"]["ratio"] is not None
        assert rec["grad_ratio"] == run["grad_norms"]["end"]["ratio"]  # every epoch end is probed; the last is "end"
        assert rec["grad_zero_layers"] == run["grad_norms"]["end"]["zero_layers"]
    dec = res["runs"]["4/sigmoid/decoupled"]
    assert all(g["mu"] == pytest.approx(dec["records"][0]["mu"], rel=0.3) for g in dec["grad_norms"].values())
    assert "mu" not in res["runs"]["4/sigmoid/bp-glorot-adam"]["grad_norms"]["end"]
    assert dec["z_bytes"] == 1438 * 4 * 16 * 4  # n x hidden layers x width x fp32
    assert len(dec["records"][0]["feasibility_gap"]) == 4 and "consistency_loss" in dec["records"][0]
    assert "z_bytes" not in res["runs"]["4/sigmoid/bp-glorot-adam"]
    report = (out / "report.md").read_text()
    assert "## Depth 4, sigmoid" in report and "**(a) Depth 50" in report and "Not measured" in report
    for m in DEPTH_METHODS:
        assert f"| {m} | complete | 1 |" in report
    assert "grad ratio max/min, end of training" in report and "| 0.4 |" in report  # z store MiB
    for png in ("loss_d4_sigmoid.png", "grads_d4_sigmoid.png", "gap_d4_sigmoid.png", "ratio_d4_sigmoid.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # an existing run is kept; --resume adds only the missing (depth, activation, method); config changes are refused
    assert main(args) == 1 and "already holds a run" in capsys.readouterr().err
    more = [
        "bench",
        "depth",
        "--activations",
        "tanh",
        "--methods",
        "bp-glorot-adam",
        "--out",
        str(out),
        *TINY,
        "--resume",
    ]
    assert main(more) == 0
    again = json.loads((out / "results.json").read_text())
    assert {k: v for k, v in again["runs"].items() if k != "4/tanh/bp-glorot-adam"} == res["runs"]
    assert again["runs"]["4/tanh/bp-glorot-adam"]["status"] == "complete"
    assert again["methods"] == list(DEPTH_METHODS) and again["activations"] == ["tanh", "sigmoid"]
    assert "## Depth 4, tanh" in (out / "report.md").read_text()
    assert main([*more, "--z-steps", "2"]) == 1
    assert "Resume with the same arguments" in capsys.readouterr().err


def test_model_layout_and_inits():
    torch.manual_seed(0)
    model = build_mlp(8, 3, 3, 6, "tanh", "orthogonal")
    assert len(linear_layers(model)) == 4 and len(model) == 7
    w = linear_layers(model)[1].weight
    gain = torch.nn.init.calculate_gain("tanh")
    torch.testing.assert_close(w @ w.T, gain**2 * torch.eye(6), atol=1e-5, rtol=0)
    assert all(float(lin.bias.detach().abs().max()) == 0 for lin in linear_layers(model))
    blocks = blocks_of(model)
    assert len(blocks) == 4 and blocks[0][0] is model[0] and blocks[-1] is model[6]
    x = torch.randn(5, 8)
    h = x
    for b in blocks:
        h = b(h)
    torch.testing.assert_close(h, model(x))  # the decoupled blocks ARE the plain network
    with pytest.raises(ValueError, match="Invalid activation='relu'"):
        build_mlp(8, 3, 3, 6, "relu")
    assert grad_ratio([1.0, 0.0, 4.0]) == {"norms": [1.0, 0.0, 4.0], "ratio": None, "zero_layers": 1}
    assert grad_ratio([2.0, 8.0])["ratio"] == 4.0


def test_bad_arguments(tmp_path, capsys):
    for bad, message in (
        (["--methods", "sgd"], "unknown method"),
        (["--activations", "relu"], "unknown activation"),
        (["--depths", "0"], "hidden-layer counts >= 1"),
        (["--z-lr", "-1"], "expected a number > 0"),
    ):
        with pytest.raises(SystemExit):
            main(["bench", "depth", "--out", str(tmp_path / "x"), *bad])
        assert message in capsys.readouterr().err


def test_critical_init_keeps_the_signal_of_a_deep_sigmoid_net() -> None:
    """Orthogonal weights × 1/f'(0) with centring biases make each sigmoid layer an isometry at 0: the spread
    of the last hidden layer across inputs stays of the order of the first's; gain-1 orthogonal collapses it."""
    torch.manual_seed(0)
    x = torch.rand(256, 64)

    def spreads(init: str) -> tuple[float, float]:
        torch.manual_seed(1)
        model = build_mlp(64, 10, 20, 64, "sigmoid", init)
        with torch.no_grad():
            first = model[1](model[0](x))
            last = model[:-1](x)
        return float(first.std(0).mean()), float(last.std(0).mean())

    f, last = spreads("critical")
    assert last > f / 10
    f, last = spreads("orthogonal")
    assert last < f / 100
    model = build_mlp(64, 10, 3, 64, "tanh", "critical")
    for lin in linear_layers(model)[:-1]:  # tanh: plain orthogonal weights, zero biases
        torch.testing.assert_close(
            lin.weight @ lin.weight.T if lin.in_features >= lin.out_features else lin.weight.T @ lin.weight,
            torch.eye(64),
            atol=1e-5,
            rtol=0,
        )
        assert torch.equal(lin.bias, torch.zeros(64))


def test_ratio_without_penalty_divides_mu_out_of_the_hidden_blocks_only():
    e = {
        "grad_norms": {"end": grad_ratio([10.0, 40.0, 0.5], mu=10.0), "epoch_1": grad_ratio([2.0, 1.0, 3.0])},
        "records": [{"mu": 2.0}, {"mu": 10.0}],
    }
    assert e["grad_norms"]["end"]["ratio"] == 80.0  # as descended: the output's 0.5 against μ·4
    assert ratio_without_penalty(e, "end")["ratio"] == 8.0  # [1, 4] and the output's 0.5
    assert ratio_without_penalty(e, "epoch_1")["ratio"] == 6.0  # μ from the epoch's record: [1, 0.5] and 3
    assert ratio_without_penalty({"grad_norms": {"end": grad_ratio([1.0, 2.0])}, "records": []}, "end") is None


def _epochs(*ratios):
    return [{"epoch": i + 1, "grad_ratio": r, "train_acc": 0.5} for i, r in enumerate(ratios)]


def test_stays_within_100x_is_judged_at_every_epoch_end():
    assert epoch_ratios({"records": _epochs(20.0, 99.0, 40.0)}) == (
        "max over the 3 epoch ends 99 (epoch 2), within 100× at 3 of 3",
        True,
    )
    assert epoch_ratios({"records": _epochs(20.0, 150.0, 40.0)})[1] is False  # the end alone (40) would pass
    text, ok = epoch_ratios({"records": _epochs(None, 5.0)})
    assert not ok and "∞" in text and "epoch 1" in text
    assert epoch_ratios({"records": [{"epoch": 1}]}) is None  # records made before the per-epoch probe

    def run(method, ratios):
        return {
            "method": method,
            "records": _epochs(*ratios),
            "grad_norms": {p: grad_ratio([1.0, ratios[-1]]) for p in ("first_step", "epoch_1", "end")},
        }

    results = {
        "methods": ["decoupled", "bp-glorot-adam"],
        "runs": {
            "50/tanh/decoupled": run("decoupled", [20.0, 150.0, 40.0]),
            "50/tanh/bp-glorot-adam": run("bp-glorot-adam", [1e6, 1e7, 1e8]),
        },
    }
    text = "\n".join(acceptance(results))
    assert "within 100× at every epoch end: **NO**" in text and "max over the 3 epoch ends 150 (epoch 2)" in text
    assert "bp-glorot-adam" in text and "1e+08 (epoch 3)" in text
    results["runs"]["50/tanh/decoupled"] = run("decoupled", [20.0, 90.0, 40.0])
    assert "within 100× at every epoch end: **YES**" in "\n".join(acceptance(results))


def test_float64_and_activation_slopes_reach_the_models(tmp_path):
    from layerwise_bench.deep_mlp._depth_bench import DepthConfig, train_depth
    from layerwise_bench.deep_mlp._loop import load_data

    cfg = DepthConfig(dataset="digits", subset=256, epochs=1, width=8, dtype="float64", activation_slopes=True)
    data = load_data(cfg, None, torch.device("cpu"), False)
    assert data.train_x.dtype == torch.float64 == data.test_x.dtype
    seen = []
    for method in ("decoupled-forward", "decoupled", "deep-supervision"):
        entry = train_depth(method, "sigmoid", 3, cfg, data, on_model=seen.append)
        assert entry["status"] == "complete"
    assert all(p.dtype == torch.float64 for m in seen for p in m.parameters())
    out = tmp_path / "r"
    assert (
        main(
            [
                "bench",
                "depth",
                "--activations",
                "sigmoid",
                "--methods",
                "decoupled-forward",
                "--out",
                str(out),
                "--dtype",
                "float64",
                "--activation-slopes",
                *TINY,
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["dtype"] == "float64" and res["config"]["activation_slopes"] is True
    assert "curvature bound: True" in res["descriptions"]["decoupled-forward"]
    assert "float64 data and parameters" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="Invalid dtype 'float16'"):
        bench_run(tmp_path / "bad", cfg=DepthConfig(dtype="float16"))


def test_accuracy_line_counts_epochs_at_the_target():
    recs = [
        {"epoch": e + 1, "train_acc": a, "train_time": 2.0 * (e + 1)} for e, a in enumerate([0.5, 0.96, 0.94, 0.951])
    ]
    line = accuracy_line("decoupled-forward", recs)
    assert "final training accuracy 0.9510 (best epoch 0.9600) after 4 epoch(s), 8 s → reaches 95% at the end" in line
    assert "first ≥ 95% at epoch 2, 2 of the last 4 epochs ≥ 95%." in line
    assert accuracy_line("m", recs[:1]).endswith("does NOT reach 95% at the end; no epoch ≥ 95%.")
