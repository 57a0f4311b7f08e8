"""``layerwise bench exits`` on a tiny LM: the exits are the shared head on each block's output, every weighting
completes, the equal-time point lies within the run, LayerSkip computes only the exits it weights, resume keeps
finished runs, and ``layerwise report`` rebuilds the report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from layerwise_bench import ExitsConfig, run_exits_benchmark
from layerwise_bench.cli import main
from layerwise_bench.exits._bench import EXIT_METHODS, ExitsTrial, load_exits_data
from layerwise_bench.workloads import byte_cross_entropy

pytestmark = pytest.mark.bench

TINY = ExitsConfig(
    depth=3, width=16, heads=2, context=8, subset=192, epochs=1, eval_windows=64, evals=2, telemetry_every=2
)


def _trial(method: str) -> ExitsTrial:
    return ExitsTrial(method, 0, TINY, load_exits_data(TINY, torch.device("cpu")), total_steps=6)


def test_each_exit_is_the_shared_norm_and_head_on_its_block_output():
    trial = _trial("equal")
    x, y = trial.data.train_x[:4], trial.data.train_y[:4]
    losses = trial.losses(x, y)
    model = trial.model
    with torch.no_grad():
        h = model.embed(x) + model.pos[:, : x.shape[1]]
        for i, block in enumerate(model.blocks):
            h = block(h)
            name = f"exit{i + 1}" if i < TINY.depth - 1 else "main"
            torch.testing.assert_close(losses[name], byte_cross_entropy(model.head(model.norm(h)), y))
    assert list(losses) == ["exit1", "exit2", "main"]
    trial.close()


def test_layerskip_computes_only_the_exits_its_curriculum_weights():
    trial = _trial("layerskip")
    x, y = trial.data.train_x[:4], trial.data.train_y[:4]
    assert trial.weighting.enabled() == ["main"]  # gradual: the first step trains the output only
    losses = trial.losses(x, y, trial.weighting.enabled())
    assert losses["exit1"].grad_fn is None and float(losses["exit1"]) == 0.0
    assert losses["exit1"].dtype == losses["main"].dtype
    calls = []
    exit_head = trial._exit
    trial._exit = lambda h: calls.append(1) or exit_head(h)  # type: ignore[method-assign]
    before = [p.detach().clone() for p in trial.model.parameters()]
    trial.step(x, y)  # step 0: the output only
    assert calls == [] and any(not torch.equal(a, b) for a, b in zip(before, trial.model.parameters(), strict=True))
    trial.step(x, y), trial.step(x, y), trial.step(x, y)  # by half of the 6 steps every exit is on
    assert len(calls) == 1 + 2  # step 2: the deeper exit; step 3: both
    trial.close()


class _Scripted:
    """A trial whose step returns scripted losses, to test the loop's spike and divergence accounting."""

    def __init__(self, losses, cfg):
        self.losses, self.i = list(losses), 0
        self.data = load_exits_data(cfg, torch.device("cpu"))
        self.entry = {"method": "scripted", "records": [], "spikes": []}
        self.weighting = type("W", (), {"current": {}, "summary": lambda self: ""})()

    def step(self, x, y):
        self.i += 1
        return self.losses[self.i - 1]

    def evaluate(self):
        return {"val_loss": 1.0, "exit_val_loss": {}}

    def measure(self, x, y, step):
        pass

    def close(self):
        pass


def test_the_loop_counts_spikes_against_the_previous_fifty_and_stops_on_a_non_finite_loss():
    from dataclasses import replace

    from layerwise_bench.exits._bench import _train

    cfg = replace(TINY, batch_size=1, subset=60, telemetry_every=0)
    trial = _Scripted([1.0] * 55 + [1.6, 1.4] + [1.0] * 3, cfg)
    _train(trial, cfg, 0, budget=None, save=lambda: None)
    assert trial.entry["status"] == "complete" and [s["step"] for s in trial.entry["spikes"]] == [56]
    assert trial.entry["at_budget"]["before_budget"] is False  # no budget: scored at the end
    broken = _Scripted([1.0] * 10 + [float("nan")] + [1.0] * 49, cfg)
    _train(broken, cfg, 0, budget=None, save=lambda: None)
    assert broken.entry["status"] == "diverged" and "step 11" in broken.entry["error"]


def test_every_weighting_completes_and_the_report_rebuilds(tmp_path, capsys):
    out = tmp_path / "exits"
    results = run_exits_benchmark(out, seeds=[0], cfg=TINY, progress=False)
    runs = results["runs"]
    assert set(runs) == {f"{m}/0" for m in EXIT_METHODS}
    for key, run in runs.items():
        assert run["status"] == "complete", key
        last = run["records"][-1]
        assert math.isfinite(last["val_loss"]) and set(last["exit_val_loss"]) == {"exit1", "exit2"}
        budget = runs["none/0"]["records"][-1]["train_time"]
        point = run["at_budget"]
        assert point["train_time"] >= budget or (point["before_budget"] and point["step"] == last["step"])
        if key != "none/0":
            assert run["telemetry"] and all(
                -1 <= c <= 1 for c in run["telemetry"][-1]["cosine_with_main"]["block1"].values()
            )
    weights = runs["uncertainty/0"]["records"][-1]["weights"]
    assert set(weights) == {"exit1", "exit2", "main"} and weights != {"exit1": 1.0, "exit2": 1.0, "main": 1.0}
    report = (out / "report.md").read_text()
    assert "| `gradnorm` | 1/1 |" in report and "the best learned weighting" in report
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == report


def test_resume_keeps_finished_runs_and_refuses_another_configuration(tmp_path):
    out = tmp_path / "exits"
    first = run_exits_benchmark(out, methods=["equal"], seeds=[0], cfg=TINY, progress=False)
    again = run_exits_benchmark(out, methods=["equal", "fixed-0.1"], seeds=[0], cfg=TINY, resume=True, progress=False)
    assert again["runs"]["equal/0"] == first["runs"]["equal/0"] and again["runs"]["fixed-0.1/0"]["status"] == "complete"
    assert json.loads((out / "results.json").read_text())["methods"] == ["none", "equal", "fixed-0.1"]
    with pytest.raises(ValueError, match="resume"):
        run_exits_benchmark(out, methods=["equal"], seeds=[0], cfg=ExitsConfig(depth=2), resume=True, progress=False)


def test_misuse_is_named():
    with pytest.raises(ValueError, match="subset=10000000"):
        load_exits_data(ExitsConfig(subset=10_000_000), torch.device("cpu"))
    with pytest.raises(ValueError, match="depth=1"):
        run_exits_benchmark("/nonexistent-never-written", seeds=[0], cfg=ExitsConfig(depth=1), progress=False)
    with pytest.raises(ValueError, match="layerskp"):
        run_exits_benchmark("/nonexistent-never-written", methods=["layerskp"], progress=False)
