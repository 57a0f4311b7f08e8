"""Factored Linear gradients (telemetry with ``model=``): same numbers as separate autograd.grad calls, every case."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import layerwise
from layerwise.telemetry import GradientTelemetry, TermGradients
from layerwise.terms import LinearCapture, factored_is_cheaper, plan_factors
from layerwise.weighting import Fixed, GradNorm


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class Supervised(nn.Module):
    """Tanh trunk of Linear layers, a head after layers 1, 2 and 3; ``tie`` reuses layer 1's weight in the loss."""

    def __init__(self, width: int = 24, tie: bool = False, twice: bool = False) -> None:
        super().__init__()
        self.trunk = nn.ModuleList([nn.Linear(10 if i == 0 else width, width) for i in range(3)])
        self.heads = nn.ModuleList([nn.Linear(width, 4) for _ in range(3)])
        self.tie, self.twice = tie, twice

    def losses(self, x, y):
        out, h = {}, x
        for i, (layer, head) in enumerate(zip(self.trunk, self.heads, strict=True)):
            h = torch.tanh(layer(h))
            if self.twice and i == 1:
                h = torch.tanh(layer(h))  # the same layer called a second time
            out[f"t{i}"] = F.cross_entropy(head(h).reshape(-1, 4), y.reshape(-1))
        if self.tie:
            out["t0"] = out["t0"] + 1e-2 * self.trunk[1].weight.pow(2).sum()  # a second use of layer 1's weight
        return out


def data(rows, seq=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (rows, 10) if seq is None else (rows, seq, 10)
    return (torch.randn(*shape, dtype=torch.float64, generator=g), torch.randint(0, 4, shape[:-1], generator=g))


def model_of(**kw):
    torch.manual_seed(0)
    return Supervised(**kw).double()


def reference_gramian(losses, params):
    rows = []
    for loss in losses.values():
        gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, gs, strict=True)])
        )
    j = torch.stack(rows)
    return j @ j.T


SETS = {"all": None, "trunk": "trunk", "layer1": "trunk.1"}


def sets_of(model):
    return {"all": model.parameters(), "trunk": model.trunk, "layer1": model.trunk[1]}


@pytest.mark.parametrize("rows", [6, 200])  # 6 rows: the trunk's factored Gramians are cheaper; 200: none is
def test_measure_with_model_equals_separate_autograd_grad(rows):
    model = model_of()
    tel = GradientTelemetry(sets_of(model), model=model)
    losses = model.losses(*data(rows))
    grads = TermGradients(losses, tel.params, tel.capture, retain_graph=True)
    factored = {id(tel.params[i]) for i in grads.factors}
    # the flop model: the trunk's weights (3, 2 and 1 terms reach them) only at 6 rows;
    # the heads (1 term, 4 outputs) never
    assert factored == ({id(layer.weight) for layer in model.trunk} if rows == 6 else set())
    if rows == 6:
        first = next(f for f in grads.factors.values() if tel.params[f.weight] is model.trunk[0].weight)
        assert first.present == [0, 1, 2] and first.prefer_factored(update=False)
    snap = tel.measure(losses)
    assert snap is not None
    for name, params in tel.param_sets.items():
        torch.testing.assert_close(
            torch.tensor(snap.gramian[name], dtype=torch.float64),
            reference_gramian(losses, params),
            rtol=1e-10,
            atol=1e-13,
            msg=name,
        )
    assert not tel.capture.calls  # nothing kept after the measured step


@pytest.mark.parametrize("rows", [6, 200])
def test_backward_with_model_gives_the_weighted_sum_and_the_same_snapshot(rows):
    weights = {"t0": 0.25, "t1": 2.0, "t2": 1.0}  # exact in float32, the weighting's dtype
    model = model_of()
    plain = model_of()
    tel = GradientTelemetry(sets_of(model), model=model)
    ref_tel = GradientTelemetry(sets_of(plain))
    x, y = data(rows)
    layerwise.backward(model.losses(x, y), Fixed(weights, warn_useless=False), params=model.parameters(), telemetry=tel)
    layerwise.backward(
        plain.losses(x, y), Fixed(weights, warn_useless=False), params=plain.parameters(), telemetry=ref_tel
    )
    losses = plain.losses(x, y)
    expected = torch.autograd.grad(sum(w * losses[t] for t, w in weights.items()), list(plain.parameters()))
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-10, atol=1e-13)
    for name in SETS:
        torch.testing.assert_close(
            torch.tensor(tel.history[0].gramian[name], dtype=torch.float64),
            torch.tensor(ref_tel.history[0].gramian[name], dtype=torch.float64),
            rtol=1e-10,
            atol=1e-13,
        )


@pytest.mark.parametrize("kw", [{"tie": True}, {"twice": True}])
def test_shared_or_twice_called_weight_is_not_factored_and_stays_exact(kw):
    model = model_of(**kw)
    tel = GradientTelemetry(sets_of(model), model=model)
    x, y = data(6)
    losses = model.losses(x, y)
    grads = TermGradients(losses, tel.params, tel.capture, retain_graph=True)
    factored = {id(tel.params[i]) for i in grads.factors}
    assert id(model.trunk[1].weight) not in factored
    assert factored == {id(model.trunk[0].weight), id(model.trunk[2].weight)}  # the heads: cheaper dense
    snap = tel.measure(losses)
    torch.testing.assert_close(
        torch.tensor(snap.gramian["layer1"], dtype=torch.float64),
        reference_gramian(losses, list(model.trunk[1].parameters())),
        rtol=1e-10,
        atol=1e-13,
    )
    model.zero_grad()
    layerwise.backward(
        model.losses(x, y), params=model.parameters(), telemetry=GradientTelemetry(sets_of(model), model=model)
    )
    expected = torch.autograd.grad(sum(model.losses(x, y).values()), list(model.parameters()))
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-10, atol=1e-13)


def test_sequence_inputs_are_flattened_to_rows():
    model = model_of()
    tel = GradientTelemetry(sets_of(model), model=model)
    losses = model.losses(*data(3, seq=5))
    snap = tel.measure(losses)
    torch.testing.assert_close(
        torch.tensor(snap.gramian["all"], dtype=torch.float64),
        reference_gramian(losses, list(model.parameters())),
        rtol=1e-10,
        atol=1e-13,
    )


def test_input_modified_in_place_after_the_call_is_not_factored():
    lin = nn.Linear(50, 30).double()
    capture = LinearCapture(lin, lambda: True)
    x = torch.randn(2, 50, dtype=torch.float64, requires_grad=True)
    a = x * 1.0
    z = lin(a)
    a.mul_(2.0)  # the weight gradient would now be wrong from A; autograd itself would refuse too
    assert plan_factors(capture, {"z": z.sum()}, [lin.weight, lin.bias]) == []
    b = x * 1.0
    z = lin(b)
    assert len(plan_factors(capture, {"z": z.sum()}, [lin.weight, lin.bias])) == 1


def test_plan_follows_the_flop_model():
    lin = nn.Linear(50, 30).double()
    capture = LinearCapture(lin, lambda: True)
    for rows, terms, update, expected in [
        (2, 1, False, True),
        (2, 1, True, True),
        (400, 1, False, False),
        (40, 1, True, False),
        (40, 8, False, True),
        (40, 8, True, True),
        (100, 8, True, False),
    ]:
        z = lin(torch.randn(rows, 50, dtype=torch.float64))
        losses = {f"t{k}": z[:, k].sum() for k in range(terms)}  # every term reaches the call
        got = plan_factors(capture, losses, [lin.weight, lin.bias], update={0} if update else ())
        assert bool(got) == expected == factored_is_cheaper(terms, rows, 50, 30, update), (rows, terms, update)
    # only the terms whose graph reaches the call count: at 30 rows, 1 term -> dense, 2 terms -> factored
    z = lin(torch.randn(30, 50, dtype=torch.float64))
    elsewhere = torch.ones(3, dtype=torch.float64, requires_grad=True)
    one = {"a": z.sum(), "b": elsewhere.pow(2).sum(), "c": (elsewhere * 2).sum()}
    assert plan_factors(capture, one, [lin.weight, lin.bias]) == []
    two = {"a": z.sum(), "b": elsewhere.pow(2).sum(), "c": (z[:, 0] * elsewhere[0]).sum()}
    assert len(plan_factors(capture, two, [lin.weight, lin.bias])) == 1


def test_hooks_keep_nothing_on_skipped_steps_and_close_removes_them():
    model = model_of()
    tel = GradientTelemetry(sets_of(model), every=2, model=model)
    x, y = data(6)
    layerwise.backward(model.losses(x, y), params=model.parameters(), telemetry=tel)  # step 0: measured
    assert not tel.capture.calls
    losses = model.losses(x, y)  # step 1: not due, the hooks keep nothing
    assert not tel.capture.calls
    layerwise.backward(losses, params=model.parameters(), telemetry=tel)
    with torch.no_grad():
        model.losses(x, y)  # step 2 is due, but no graph is recorded: nothing kept
    assert not tel.capture.calls
    model.losses(x, y)
    assert len(tel.capture.calls) == 6
    tel.close()
    assert not tel.capture.calls
    model.losses(x, y)
    assert not tel.capture.calls  # hooks removed


def test_gradnorm_on_a_factored_weight_gets_its_per_term_gradients():
    model, plain = model_of(), model_of()
    terms = ["t0", "t1", "t2"]
    gn = GradNorm(terms, model.trunk[0].parameters())
    gn_ref = GradNorm(terms, plain.trunk[0].parameters())
    x, y = data(6)
    for _ in range(3):
        model.zero_grad()
        plain.zero_grad()
        layerwise.backward(
            model.losses(x, y), gn, params=model.parameters(), telemetry=GradientTelemetry(sets_of(model), model=model)
        )
        layerwise.backward(plain.losses(x, y), gn_ref, params=plain.parameters())
        torch.testing.assert_close(gn.w, gn_ref.w, rtol=1e-10, atol=1e-13)
        for p, q in zip(model.parameters(), plain.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-13)


def test_model_must_be_a_module():
    model = model_of()
    with pytest.raises(TypeError, match="Invalid model: expected the nn.Module"):
        GradientTelemetry(sets_of(model), model=list(model.parameters()))


def test_output_modified_in_place_by_the_next_op_still_gives_exact_gradients():
    """``relu_(linear(x))`` rewrites the Linear's output: Δ must be the gradient at the layer's output as computed."""
    torch.manual_seed(0)
    layers = nn.ModuleList([nn.Linear(20, 30), nn.Linear(30, 30), nn.Linear(30, 3)]).double()

    def losses():
        h = x
        out = {}
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < 2:
                h = F.relu(h, inplace=True)
            out[f"t{i}"] = h.pow(2).mean()
        return out

    x = torch.randn(4, 20, dtype=torch.float64)
    params = list(layers.parameters())
    tel = GradientTelemetry({"all": params}, model=layers)
    ls = losses()
    grads = TermGradients(ls, tel.params, tel.capture, retain_graph=True)
    assert len(grads.factors) >= 2  # the in-place rewritten outputs are factored
    snap = tel.measure(losses())
    torch.testing.assert_close(
        torch.tensor(snap.gramian["all"], dtype=torch.float64), reference_gramian(ls, params), rtol=1e-10, atol=1e-13
    )


def test_record_terms_rejects_mismatched_gradients_and_keeps_its_state():
    model = model_of()
    tel = GradientTelemetry(sets_of(model), model=model)
    losses = model.losses(*data(6))
    partial = TermGradients(losses, list(model.trunk.parameters()), retain_graph=True)  # no head parameters
    with pytest.raises(ValueError, match=r"Invalid grads: telemetry.params\[.*are not among the parameters"):
        tel.record_terms(losses, partial)
    two = {k: losses[k] for k in ("t0", "t1")}
    with pytest.raises(ValueError, match="Invalid grads: expected gradients for the terms"):
        tel.record_terms(losses, TermGradients(two, tel.params, retain_graph=True))
    assert tel.step == 0 and not tel.history and tel.terms is None
    snap = tel.record_terms(losses, TermGradients(losses, tel.params, retain_graph=True))
    torch.testing.assert_close(
        torch.tensor(snap.gramian["all"], dtype=torch.float64),
        reference_gramian(losses, list(model.parameters())),
        rtol=1e-10,
        atol=1e-13,
    )
