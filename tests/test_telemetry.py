"""Telemetry against a slow, obvious reference: one torch.autograd.grad per term and set, explicit dot products."""

import csv
import json
import math

import pytest
import torch
from torch import nn

import layerwise
from layerwise.telemetry import (
    CSVSink,
    GradientTelemetry,
    JSONLSink,
    NonFiniteLoss,
    Snapshot,
    layer_sets,
    set_gramians,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is as fast, and immune to oversubscription on a busy machine (conftest restores)."""
    torch.set_num_threads(1)


class TwoHeads(nn.Module):
    """A shared trunk, heads "a" and "b" on its output and an auxiliary head "c" on its first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.a, self.b, self.c = nn.Linear(16, 3), nn.Linear(16, 1), nn.Linear(16, 2)

    def losses(self, x, scale=1.0):
        h1 = self.trunk[1](self.trunk[0](x))
        z = self.trunk[3](self.trunk[2](h1))
        return {
            "a": scale * nn.functional.cross_entropy(self.a(z), torch.arange(len(x)) % 3),
            "b": scale * self.b(z).pow(2).mean(),
            "c": scale * self.c(h1).abs().mean(),
        }


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TwoHeads().double()


@pytest.fixture
def x():
    return torch.randn(32, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def sets_of(model):
    return {
        "all": model.parameters(),
        "shared": model.trunk,
        "last_shared": model.trunk[2].parameters(),
        **layer_sets(model),
    }


def reference(losses, params):
    """Gramian, norms and cosines of the per-term gradients on ``params``, the obvious way."""
    rows = []
    for loss in losses.values():
        gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, gs, strict=True)])
        )
    k = len(rows)
    gram = [[float(rows[i] @ rows[j]) for j in range(k)] for i in range(k)]
    norms = [float(torch.linalg.vector_norm(r)) for r in rows]
    cos = [[gram[i][j] / (norms[i] * norms[j]) if norms[i] * norms[j] > 0 else 0.0 for j in range(k)] for i in range(k)]
    return gram, norms, cos


def close(got, expected, **kw):
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), **kw
    )


def test_norms_cosines_gramian_equal_separate_autograd_grad_per_term_and_set(model, x):
    tel = GradientTelemetry(sets_of(model))
    losses = model.losses(x)
    snap = tel.measure(losses)
    assert snap is not None and snap.terms == ["a", "b", "c"]
    assert snap.sets == ["all", "shared", "last_shared", "trunk.0", "trunk.2", "a", "b", "c"]
    for name, params in tel.param_sets.items():
        gram, norms, cos = reference(losses, params)
        close(snap.gramian[name], gram, rtol=1e-10, atol=1e-14, msg=name)
        close(list(snap.norms[name].values()), norms, rtol=1e-10, atol=1e-14, msg=name)
        close(snap.cosines[name], cos, rtol=1e-9, atol=1e-12, msg=name)
    # terms that do not reach a set: zero norm, cosine 0 by convention, no share
    assert snap.norms["trunk.2"]["c"] == 0 and snap.norms["a"]["b"] == 0 and snap.norms["a"]["a"] > 0
    assert snap.cosines["trunk.2"][0][2] == snap.cosines["trunk.2"][2][2] == 0.0
    assert snap.contributions["a"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert snap.losses == pytest.approx({k: v.item() for k, v in losses.items()})


def test_record_takes_precomputed_grads_with_none_for_unreached_params(model, x):
    tel = GradientTelemetry(sets_of(model))
    losses = model.losses(x)
    grads = {
        k: list(torch.autograd.grad(v, tel.params, retain_graph=True, allow_unused=True)) for k, v in losses.items()
    }
    assert any(g is None for g in grads["c"])
    snap = tel.record({k: v.item() for k, v in losses.items()}, grads)
    expected = GradientTelemetry(sets_of(model)).measure(losses)
    assert snap.losses == expected.losses and snap.sets == expected.sets
    for s in snap.sets:
        close(snap.gramian[s], expected.gramian[s], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"Invalid grads\['a'\]: expected 10 tensors aligned"):
        tel.record(losses, {**grads, "a": grads["a"][:-1]})
    with pytest.raises(
        ValueError,
        match=r"Invalid grads\['b'\]\[0\]: shape \(3,\), but telemetry.params\[0\] has "
        r"shape \(16, 6\)",
    ):
        tel.record(losses, {**grads, "b": [torch.zeros(3)] + grads["b"][1:]})


@pytest.mark.parametrize("weights", [None, {"a": 2.0, "b": 0.5, "c": 0.0}, {"a": 1.0, "b": -3.0, "c": 0.25}])
def test_contributions_are_weighted_shares_summing_to_one(model, x, weights):
    snap = GradientTelemetry(sets_of(model)).measure(model.losses(x), weights)
    w = {t: 1.0 for t in "abc"} if weights is None else weights
    assert snap.weights == weights
    for s in snap.sets:
        total = sum(abs(w[t]) * snap.norms[s][t] for t in "abc")
        if total == 0:  # only "c" reaches set "c", and its weight is 0
            assert s == "c" and weights["c"] == 0 and set(snap.contributions[s].values()) == {0.0}
            continue
        assert sum(snap.contributions[s].values()) == pytest.approx(1.0, abs=1e-12)
        assert snap.contributions[s] == pytest.approx({t: abs(w[t]) * snap.norms[s][t] / total for t in "abc"})


def test_scaling_the_losses_scales_norms_and_leaves_cosines(model, x):
    base = GradientTelemetry(model).measure(model.losses(x))
    for scale in (1e-10, 1e12):
        snap = GradientTelemetry(model).measure(model.losses(x, scale))
        assert snap.norms["all"] == pytest.approx({t: scale * v for t, v in base.norms["all"].items()}, rel=1e-9)
        close(snap.cosines["all"], base.cosines["all"], rtol=1e-9, atol=1e-12)


def test_every_n_measures_steps_0_n_2n(model, x):
    tel = GradientTelemetry(model, every=3)
    recorded = []
    for i in range(8):
        assert tel.due() == (i % 3 == 0)
        snap = tel.measure(model.losses(x))
        assert (snap is not None) == (i % 3 == 0)
        recorded += [i] if snap else []
    assert recorded == [0, 3, 6] and [s.step for s in tel.history] == [0, 3, 6] and tel.step == 8
    tel.skip()
    assert tel.step == 9 and tel.due()
    assert GradientTelemetry(model, keep_history=False).measure(model.losses(x)) is not None


def test_measure_keeps_the_graph_and_leaves_grad_alone(model, x):
    tel = GradientTelemetry(sets_of(model))
    losses = model.losses(x)
    tel.measure(losses)
    assert all(p.grad is None for p in model.parameters())
    sum(losses.values()).backward()  # the graph is still there
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    sum(model.losses(x).values()).backward()
    for g, ref in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(g, ref.grad, rtol=0, atol=0)


def test_backward_with_telemetry_records_what_measure_does(model, x):
    tel = GradientTelemetry(sets_of(model), every=2)
    expected = GradientTelemetry(sets_of(model)).measure(model.losses(x))
    layerwise.backward(model.losses(x), params=model.parameters(), telemetry=tel)
    layerwise.backward(model.losses(x), params=model.parameters(), telemetry=tel)
    assert tel.step == 2 and len(tel.history) == 1
    snap = tel.history[0]
    assert snap.weights == {"a": 1.0, "b": 1.0, "c": 1.0}
    for s in snap.sets:
        close(snap.gramian[s], expected.gramian[s], rtol=1e-10, atol=1e-14)


def test_term_order_is_fixed_by_the_first_step_and_names_must_not_change(model, x):
    tel = GradientTelemetry(model)
    tel.measure(model.losses(x))
    swapped = dict(reversed(list(model.losses(x).items())))
    snap = tel.measure(swapped)
    assert snap.terms == ["a", "b", "c"]
    assert snap.norms == tel.history[0].norms
    losses = model.losses(x)
    losses["d"] = losses.pop("c")
    with pytest.raises(
        ValueError,
        match=r"Loss terms changed at step 2: the first measured step had \['a', 'b', "
        r"'c'\], this one has \['a', 'b', 'd'\]",
    ):
        tel.measure(losses)
    del losses["d"]
    with pytest.raises(ValueError, match="Loss terms changed"):
        tel.measure(losses)
    with pytest.raises(ValueError, match=r"Invalid weights: expected one weight per term \['a', 'b', 'c'\]"):
        tel.measure(model.losses(x), {"a": 1.0})
    assert tel.step == 2  # failed steps are not counted


def test_bad_param_sets_and_arguments(model):
    with pytest.raises(ValueError, match="Invalid param set 'shared': the parameter set is empty"):
        GradientTelemetry({"all": model.parameters(), "shared": []})
    gen = model.parameters()
    list(gen)
    with pytest.raises(ValueError, match="Invalid param set 'all': the parameter set is empty"):
        GradientTelemetry(gen)
    with pytest.raises(ValueError, match="Invalid param_sets: the mapping is empty"):
        GradientTelemetry({})
    with pytest.raises(ValueError, match="Invalid every=0. Must be a whole number >= 1"):
        GradientTelemetry(model, every=0)
    with pytest.raises(TypeError, match="Invalid sink 'log.csv'"):
        GradientTelemetry(model, sinks=["log.csv"])


def test_params_are_the_deduplicated_union_in_stable_order(model):
    tel = GradientTelemetry({"head": model.a, "all": model.parameters(), "again": [model.a.bias]})
    assert [id(p) for p in tel.params] == [id(model.a.weight), id(model.a.bias)] + [
        id(p) for p in model.parameters() if p is not model.a.weight and p is not model.a.bias
    ]
    model.trunk[0].requires_grad_(False)
    assert len(GradientTelemetry(model).params) == 8  # a module's frozen parameters are left out
    assert layer_sets(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))).keys() == {"0", "2"}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_term_is_named(model, x, bad):
    tel = GradientTelemetry(model)
    losses = model.losses(x)
    losses["b"] = losses["b"] * bad
    with pytest.raises(NonFiniteLoss, match=f"Invalid loss term 'b': its value is {bad}"):
        tel.measure(losses)
    with pytest.raises(NonFiniteLoss, match=f"Invalid loss term 'b': its value is {bad}"):
        tel.record({"a": 1.0, "b": bad, "c": 1.0}, {})
    assert tel.step == 0 and tel.history == []


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_csv_and_jsonl_sinks_hold_the_snapshot_numbers(model, x, tmp_path):
    csv_path, jsonl_path = tmp_path / "t" / "tel.csv", tmp_path / "t" / "tel.jsonl"
    tel = GradientTelemetry(
        {"all": model.parameters(), "shared": model.trunk}, every=2, sinks=[CSVSink(csv_path), JSONLSink(jsonl_path)]
    )
    for i in range(5):
        tel.measure(model.losses(x), {"a": 1.0, "b": 0.5, "c": 2.0 + i})
    # flushed before close: a crashed run keeps its lines
    rows = read_csv(csv_path)
    lines = jsonl_path.read_text().splitlines()
    tel.close()
    assert [Snapshot.from_dict(json.loads(line)) for line in lines] == tel.history
    assert len(rows) == 3 * 2 * (3 + 3)  # steps 0, 2, 4 × sets × (terms + pairs)
    for row in rows:
        snap = next(s for s in tel.history if s.step == int(row["step"]))
        s, t, o = row["set"], row["term"], row["other"]
        if o:
            i, j = snap.terms.index(t), snap.terms.index(o)
            assert i < j and row["norm"] == row["loss"] == ""
            assert float(row["cosine"]) == snap.cosines[s][i][j]
            assert float(row["inner"]) == snap.gramian[s][i][j]
        else:
            assert row["cosine"] == row["inner"] == ""
            assert float(row["norm"]) == snap.norms[s][t]
            assert float(row["contribution"]) == snap.contributions[s][t]
            assert float(row["weight"]) == snap.weights[t] and float(row["loss"]) == snap.losses[t]
    assert {(int(r["step"]), r["set"], r["term"], r["other"]) for r in rows} == {
        (step, s, *pair)
        for step in (0, 2, 4)
        for s in ("all", "shared")
        for pair in [("a", ""), ("b", ""), ("c", ""), ("a", "b"), ("a", "c"), ("b", "c")]
    }


def test_csv_weight_column_is_empty_without_weights(model, x, tmp_path):
    with GradientTelemetry(model, sinks=[CSVSink(tmp_path / "t.csv")]) as tel:
        tel.measure(model.losses(x))
    rows = read_csv(tmp_path / "t.csv")
    assert [r["weight"] for r in rows if not r["other"]] == ["", "", ""]


def test_tensorboard_sink_writes_scalars(model, x, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from layerwise.telemetry import TensorBoardSink

    with GradientTelemetry(model, every=2, sinks=[TensorBoardSink(tmp_path / "tb")]) as tel:
        for _ in range(3):
            tel.measure(model.losses(x))
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"loss/a", "norm/all/b", "contribution/all/c", "cosine/all/a~b"} <= set(acc.Tags()["scalars"])
    events = acc.Scalars("norm/all/b")
    assert [e.step for e in events] == [0, 2]
    assert events[1].value == pytest.approx(tel.history[1].norms["all"]["b"], rel=1e-6)


def test_plot_writes_png_files(model, x, tmp_path):
    pytest.importorskip("matplotlib")
    tel = GradientTelemetry({"all": model.parameters(), "c": model.c})
    with pytest.raises(ValueError, match="Nothing to plot"):
        tel.plot(tmp_path)
    for i in range(3):
        tel.measure(model.losses(x), {"a": 1.0, "b": 1.0 / (i + 1), "c": 0.1})
    paths = tel.plot(tmp_path / "plots")
    assert sorted(p.name for p in paths) == [
        "cosines_all.png",
        "cosines_c.png",
        "norms_all.png",
        "norms_c.png",
        "weights.png",
    ]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_set_gramians_of_small_and_large_parameters_with_missing_rows(k):
    gen = torch.Generator().manual_seed(k)
    shapes = [(3,), (200, 100), (7, 7), (150, 150)]  # two above the size where dot products replace a matmul
    rows = [
        [None if (t + i) % 3 == 2 else torch.randn(s, dtype=torch.float64, generator=gen) for i, s in enumerate(shapes)]
        for t in range(k)
    ]
    sets = {"all": [0, 1, 2, 3], "large": [1, 3], "one": [2]}
    got = set_gramians(rows, sets)
    for name, idx in sets.items():
        j = torch.stack(
            [
                torch.cat(
                    [torch.zeros(shapes[i]).double().reshape(-1) if r[i] is None else r[i].reshape(-1) for i in idx]
                )
                for r in rows
            ]
        )
        torch.testing.assert_close(got[name], j @ j.T, rtol=1e-12, atol=1e-12)
    none = set_gramians([[None, None]] * k, {"s": [0, 1]})
    assert none["s"].shape == (k, k) and not none["s"].any()


def test_state_dict_resumes_the_step_count_terms_and_history() -> None:
    import copy

    from layerwise.telemetry import GradientTelemetry

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    x = torch.randn(5, 3)

    def losses() -> dict:
        out = net(x)
        return {"a": out.mean(), "b": out.square().mean()}

    tel = GradientTelemetry(net, every=2)
    for _ in range(3):
        tel.measure(losses())
    saved = copy.deepcopy(tel.state_dict())
    resumed = GradientTelemetry(net, every=2)
    resumed.load_state_dict(saved)
    assert (resumed.step, resumed.terms, len(resumed.history)) == (3, ["a", "b"], 2)
    assert resumed.history[-1].gramian == tel.history[-1].gramian
    assert resumed.due() == tel.due() is False
    other = GradientTelemetry(net, every=3)
    with pytest.raises(ValueError, match=r"saved with every=2, but this one has every=3"):
        other.load_state_dict(saved)
    assert other.step == 0 and other.history == []


def test_a_parameter_frozen_after_the_telemetry_was_built_is_named() -> None:
    import layerwise

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    tel = layerwise.GradientTelemetry({"all": model}, every=1)
    model[0].requires_grad_(False)
    x = torch.randn(5, 3)
    losses = {"a": model(x).pow(2).mean(), "b": model(x).abs().mean()}
    params = [p for p in model.parameters() if p.requires_grad]
    with pytest.raises(ValueError, match=r"GradientTelemetry.s parameters: a tensor of shape \(4, 3\) does not"):
        layerwise.backward(losses, params=params, telemetry=tel)
    assert all(p.grad is None for p in model.parameters())


def test_log_sink_hands_the_flat_scalars_at_the_measured_step() -> None:
    import layerwise
    from layerwise.telemetry import LogSink

    calls: list[tuple[dict[str, float], int]] = []
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    tel = layerwise.GradientTelemetry({"all": model}, every=2, sinks=[LogSink(lambda v, step: calls.append((v, step)))])
    x = torch.randn(5, 3)
    for _ in range(3):
        tel.measure({"a": model(x).pow(2).mean(), "b": model(x).abs().mean()})
    assert [step for _, step in calls] == [0, 2]
    assert calls[1][0] == {"telemetry/" + k: v for k, v in tel.history[1].scalars().items()}
    assert {"telemetry/norm/all/a", "telemetry/cosine/all/a~b", "telemetry/loss/b"} <= set(calls[0][0])
    with pytest.raises(TypeError, match=r"LogSink: expected a function log\(values, step=...\), got str"):
        LogSink("wandb")  # type: ignore[arg-type]
