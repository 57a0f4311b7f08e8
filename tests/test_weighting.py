"""Weightings and layerwise.backward against slow references (autograd, the paper's rules written out)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.losses import LocalClassifier
from layerwise.taps import Taps
from layerwise.weighting import Fixed, GradNorm, Naive, Uncertainty, Usefulness, halving, linear_decay, step_decay

TERMS = ["main", "h1", "h2"]


class Net(nn.Module):
    """A tanh MLP with two local classifier heads (float64)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3))
        self.heads = nn.ModuleDict({"h1": LocalClassifier(7, 3), "h2": LocalClassifier(6, 3)})
        self.taps = Taps(self.trunk, {"h1": "1", "h2": "3"})
        self.double()

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.trunk(x)
        return {
            "main": F.cross_entropy(out, y),
            "h1": self.heads["h1"](self.taps["h1"], y),
            "h2": self.heads["h2"](self.taps["h2"], y),
        }


def batch(seed: int = 1, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def reference_grads(net: Net, weights: dict[str, float], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    losses = net.losses(x, y)
    total = sum(weights[k] * v for k, v in losses.items())
    return list(torch.autograd.grad(total, list(net.parameters()), allow_unused=False))


def make(kind: str, net: Net):
    shared = list(net.trunk[0].parameters()) + list(net.trunk[2].parameters())
    return {
        "fixed": lambda: Fixed({"main": 1.0, "h1": 0.3, "h2": 0.7}),
        "uncertainty": lambda: Uncertainty(TERMS),
        "gradnorm": lambda: GradNorm(TERMS, net.trunk[0].parameters(), lr=0.05),
        "lookahead": lambda: Usefulness(TERMS, shared, main="main", lr=0.05),
        "cosine": lambda: Usefulness(TERMS, shared, main="main", mode="cosine", beta=0.5),
    }[kind]()


@pytest.mark.parametrize("kind", ["fixed", "uncertainty", "gradnorm", "lookahead", "cosine"])
def test_backward_writes_exactly_the_weighted_sum_of_term_gradients(kind: str) -> None:
    net = Net()
    weighting = make(kind, net).double()
    params = list(net.parameters())
    for step in range(3):
        x, y = batch(step)
        for p in params:
            p.grad = None
        layerwise.backward(net.losses(x, y), weighting, params=params)
        used = weighting.current  # the weights this step used (learned ones move after it)
        expected = reference_grads(net, used, x, y)
        for p, e in zip(params, expected, strict=True):
            torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-14)
        with torch.no_grad():
            for p in params:
                p -= 0.1 * p.grad


def test_backward_accumulates_like_loss_backward() -> None:
    net = Net()
    params = list(net.parameters())
    x, y = batch()
    sum(net.losses(x, y).values()).backward()
    once = [p.grad.clone() for p in params]
    layerwise.backward(net.losses(x, y), params=params)
    for p, g in zip(params, once, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)


def test_forward_and_backward_helper_agree() -> None:
    a, b = Net(), Net()
    wa, wb = GradNorm(TERMS, a.trunk[0].parameters()), GradNorm(TERMS, b.trunk[0].parameters())
    for step in range(4):
        x, y = batch(step)
        a.zero_grad()
        b.zero_grad()
        wa(a.losses(x, y)).backward()
        layerwise.backward(b.losses(x, y), wb, params=list(b.parameters()))
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(wa.w, wb.w)


def gradnorm_reference(net: Net, steps: int, alpha: float, lr: float) -> tuple[list[list[float]], list[torch.Tensor]]:
    """The paper's rule written out with autograd: G_i = ||grad_W (w_i L_i)|| with create_graph, target
    detached, grad of L_grad w.r.t. w only, SGD step, clip, renormalise to sum K. Model: SGD on Σ w_i L_i."""
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    shared = list(net.trunk[0].parameters())
    initial = None
    history = []
    for step in range(steps):
        x, y = batch(step)
        losses = net.losses(x, y)
        values = torch.stack([losses[t] for t in TERMS])
        if initial is None:
            initial = values.detach()
        gnorms = []
        for i, t in enumerate(TERMS):
            gs = torch.autograd.grad(w[i] * losses[t], shared, retain_graph=True, create_graph=True)
            gnorms.append(torch.sqrt(sum((g**2).sum() for g in gs)))
        gnorms_t = torch.stack(gnorms)
        ratio = values.detach() / initial
        r = ratio / ratio.mean()
        target = (gnorms_t.mean() * r**alpha).detach()
        l_grad = (gnorms_t - target).abs().sum()
        (w_grad,) = torch.autograd.grad(l_grad, [w], retain_graph=True)
        history.append(w.detach().tolist())
        model_grads = torch.autograd.grad((w.detach() * values).sum(), list(net.parameters()))
        with torch.no_grad():
            w -= lr * w_grad
            w.clamp_(min=1e-6)
            w *= 3 / w.sum()
            for p, g in zip(net.parameters(), model_grads, strict=True):
                p -= 0.2 * g
    return history, [p.detach().clone() for p in net.parameters()]


def test_gradnorm_matches_the_papers_rule_written_out() -> None:
    ref_hist, ref_params = gradnorm_reference(Net(), steps=8, alpha=1.5, lr=0.3)
    net = Net()
    weighting = GradNorm(TERMS, net.trunk[0].parameters(), alpha=1.5, lr=0.3, optimizer="sgd").double()
    for step in range(8):
        x, y = batch(step)
        net.zero_grad()
        layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()))
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.2 * p.grad
    got = [[row[t] for t in TERMS] for row in weighting.history]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref_hist), rtol=1e-10, atol=1e-12)
    assert max(abs(a - b) for row in ref_hist for a, b in zip(row, ref_hist[0], strict=True)) > 1e-3  # weights moved
    for p, e in zip(net.parameters(), ref_params, strict=True):
        torch.testing.assert_close(p, e, rtol=1e-10, atol=1e-12)
    assert sum(weighting.w.tolist()) == pytest.approx(3.0)


def test_gradnorm_never_changes_the_model_gradient_beyond_the_weighted_sum() -> None:
    """No second-order leak: the gradient is Σ w_i ∇L_i with the weights used, not something larger."""
    net = Net()
    weighting = GradNorm(TERMS, net.trunk[0].parameters(), lr=0.5)
    x, y = batch()
    net.zero_grad()
    weighting(net.losses(x, y)).backward()
    expected = reference_grads(net, weighting.current, x, y)
    for p, e in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-14)


def test_uncertainty_weights_converge_to_one_over_twice_the_loss() -> None:
    values = torch.tensor([4.0, 0.5, 0.05], dtype=torch.float64)
    weighting = Uncertainty(["a", "b", "c"]).double()
    opt = torch.optim.Adam(weighting.parameters(), lr=0.05)
    for _ in range(2000):
        opt.zero_grad()
        weighting({k: v for k, v in zip("abc", values, strict=True)}).backward()
        opt.step()
    got = torch.tensor([weighting.current[k] for k in "abc"], dtype=torch.float64)
    torch.testing.assert_close(got, 1 / (2 * values), rtol=1e-3, atol=0)


def test_naive_recipe_collapses_weights_negative_and_aux_losses_maximised() -> None:
    """The note's measurement, reproduced: 3-layer tanh MLP, two aux heads, Adam lr 1e-2, w = 0.1."""
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    heads = nn.ModuleList([nn.Linear(32, 1), nn.Linear(32, 1)])
    taps = Taps(trunk, {"a1": "1", "a2": "3"})
    with pytest.warns(UserWarning, match="collapse|go negative"):
        weighting = Naive(["main", "a1", "a2"], main="main", init=0.1)
    opt = torch.optim.Adam([*trunk.parameters(), *heads.parameters(), *weighting.parameters()], lr=1e-2)
    x = torch.randn(256, 10)
    y = x[:, :1] * x[:, 1:2] + x[:, 2:3]
    first = None
    with pytest.warns(UserWarning, match="being MAXIMISED") as caught:  # negative weights are flagged
        for _ in range(300):
            out = trunk(x)
            losses = {
                "main": F.mse_loss(out, y),
                "a1": F.mse_loss(heads[0](taps["a1"]), y),
                "a2": F.mse_loss(heads[1](taps["a2"]), y),
            }
            first = first or {k: v.item() for k, v in losses.items()}
            opt.zero_grad()
            weighting(losses).backward()
            opt.step()
    assert weighting.current["a1"] < -1 and weighting.current["a2"] < -1
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["a1", "a2"]
    assert losses["a1"].item() > 20 * first["a1"] and losses["a2"].item() > 20 * first["a2"]


def test_usefulness_drops_a_harmful_term_and_reports_it() -> None:
    """Main: fit y. 'good' pulls the same way; 'bad' pulls to -y (its gradient opposes the main one)."""
    torch.manual_seed(0)
    lin = nn.Linear(3, 1)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    weighting = Usefulness(["main", "good", "bad"], lin.parameters(), main="main", lr=0.05, window=20)
    opt = torch.optim.SGD(lin.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match=r"'bad'.*contributes nothing; consider removing it"):
        for _ in range(150):
            out = lin(x)
            losses = {"main": F.mse_loss(out, y), "good": F.mse_loss(out, 0.9 * y), "bad": F.mse_loss(out, -y)}
            opt.zero_grad()
            layerwise.backward(losses, weighting, params=list(lin.parameters()))
            opt.step()
    assert weighting.current["bad"] == 0.0 and weighting.current["good"] > 0.5
    assert weighting.useless_terms() == ["bad"]
    assert "contributes nothing" in weighting.summary().splitlines()[2]
    weighting.drop("bad")
    out = lin(x)
    layerwise.backward(
        {"main": F.mse_loss(out, y), "good": F.mse_loss(out, 0.9 * y)}, weighting, params=list(lin.parameters())
    )
    assert weighting.current["bad"] == 0.0


def test_cosine_gate_follows_the_sign_of_the_cosine() -> None:
    lin = nn.Linear(2, 1, bias=False)
    x = torch.randn(32, 2)
    weighting = Usefulness(["main", "same", "opposite"], lin.parameters(), main="main", mode="cosine", beta=0.0)
    out = lin(x)
    weighting({"main": out.pow(2).mean(), "same": 3 * out.pow(2).mean(), "opposite": -out.pow(2).mean() + 5})
    w = Usefulness(["main", "same", "opposite"], lin.parameters(), main="main", mode="cosine", beta=0.0)
    w.load_state_dict(weighting.state_dict())
    assert w.w.tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_fixed_schedules() -> None:
    w = Fixed({"main": 1.0, "a": 0.5}, main="main", schedule=linear_decay(4))
    seen = [w.weights_for({"main": torch.tensor(1.0), "a": torch.tensor(1.0)})[1].item() for _ in range(6)]
    assert seen == pytest.approx([0.5, 0.375, 0.25, 0.125, 0.0, 0.0])
    s = Fixed.equal(["main", "a"], main="main", schedule=step_decay(2))
    seen = [s.weights_for({"main": torch.tensor(1.0), "a": torch.tensor(1.0)}).tolist() for _ in range(3)]
    assert seen == [[1, 1], [1, 1], [1, 0]]
    assert halving(["d0", "d1", "d2"]) == pytest.approx({"d0": 4 / 7, "d1": 2 / 7, "d2": 1 / 7})


@pytest.mark.parametrize("kind", ["gradnorm", "lookahead", "uncertainty"])
def test_state_dict_round_trip_resumes_identically(kind: str) -> None:
    def run(net: Net, weighting, opt, steps: range) -> None:
        for step in steps:
            x, y = batch(step)
            opt.zero_grad()
            layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()))
            opt.step()

    net = Net()
    weighting = make(kind, net).double()
    opt = torch.optim.SGD([*net.parameters(), *weighting.parameters()], lr=0.1)
    run(net, weighting, opt, range(3))
    saved = copy.deepcopy((net.state_dict(), weighting.state_dict(), opt.state_dict()))
    run(net, weighting, opt, range(3, 6))
    net2 = Net(seed=5)
    net2.load_state_dict(saved[0])
    weighting2 = make(kind, net2).double()
    weighting2.load_state_dict(saved[1])
    opt2 = torch.optim.SGD([*net2.parameters(), *weighting2.parameters()], lr=0.1)
    opt2.load_state_dict(saved[2])
    run(net2, weighting2, opt2, range(3, 6))
    assert weighting2.history == weighting.history
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_history_is_bounded_in_memory_and_in_the_state_dict() -> None:
    w = Fixed({"main": 1.0, "aux": 0.0}, window=4, history_limit=10, warn_useless=False)
    for _ in range(25):
        w.weights_for({"main": torch.tensor(1.0), "aux": torch.tensor(1.0)})
    assert w.recorded == 25 and len(w.history) == 10
    state = w.state_dict()
    assert len(state["_extra_state"]["history"]) == 4  # what the useless-term check needs, not the run
    other = Fixed({"main": 1.0, "aux": 0.0}, window=4, warn_useless=False)
    other.load_state_dict(state)
    assert other.recorded == 25 and other.useless_terms() == w.useless_terms() == ["aux"]
    unbounded = Fixed({"main": 1.0}, history_limit=None)
    for _ in range(3):
        unbounded.weights_for({"main": torch.tensor(1.0)})
    assert len(unbounded.history) == 3
    with pytest.raises(ValueError, match="history_limit=2.*at least window=4"):
        Fixed({"main": 1.0}, window=4, history_limit=2)


# --- bad input --------------------------------------------------------------------------------


def test_non_scalar_term_is_named() -> None:
    w = Fixed.equal(["main", "aux"])
    with pytest.raises(ValueError, match=r"'aux'.*scalar.*\(3,\)"):
        w({"main": torch.tensor(1.0), "aux": torch.ones(3)})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_term_is_named_and_weights_untouched(bad: float) -> None:
    net = Net()
    weighting = GradNorm(TERMS, net.trunk[0].parameters())
    x, y = batch()
    layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()))
    before = {k: v.clone() for k, v in weighting.state_dict().items() if isinstance(v, torch.Tensor)}
    grads = [p.grad.clone() for p in net.parameters()]
    losses = net.losses(x, y)
    losses["h2"] = losses["h2"] * bad
    with pytest.raises(ValueError, match=rf"'h2'.*{bad}"):
        layerwise.backward(losses, weighting, params=list(net.parameters()))
    for k, v in before.items():
        torch.testing.assert_close(weighting.state_dict()[k], v, equal_nan=True)
    assert len(weighting.history) == 1
    for p, g in zip(net.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_mismatched_term_names_between_steps() -> None:
    w = Fixed.equal(["main", "aux"])
    with pytest.raises(ValueError, match=r"built for \['main', 'aux'\].*Missing: \['aux'\]; unexpected: \['aux2'\]"):
        w({"main": torch.tensor(1.0), "aux2": torch.tensor(1.0)})


def test_empty_parameter_sets() -> None:
    with pytest.raises(ValueError, match="params.*empty"):
        GradNorm(TERMS, [])
    with pytest.raises(ValueError, match="params.*empty"):
        layerwise.backward({"main": torch.tensor(1.0, requires_grad=True)}, params=iter([]))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(TypeError, match="list of term names"):
        Fixed.equal("main")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="main='x'"):
        Usefulness(TERMS, nn.Linear(2, 2).parameters(), main="x")
    with pytest.raises(ValueError, match="alpha=-1"):
        GradNorm(TERMS, nn.Linear(2, 2).parameters(), alpha=-1)
    with pytest.raises(ValueError, match="weight a=-1"):
        Fixed({"a": -1.0})


def test_dropping_the_last_term_is_refused() -> None:
    w = Fixed.equal(["main", "aux"])
    w.drop("aux")
    with pytest.raises(ValueError, match="last active term"):
        w.drop("main")


def test_no_warning_for_healthy_weights() -> None:
    net = Net()
    weighting = Fixed.equal(TERMS, window=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(4):
            x, y = batch(step)
            weighting(net.losses(x, y))
    assert weighting.useless_terms() == []


def test_backward_counts_telemetry_steps_with_a_gradient_based_weighting() -> None:
    from layerwise.telemetry import GradientTelemetry

    net = Net()
    weighting = GradNorm(TERMS, net.trunk[0].parameters())
    telemetry = GradientTelemetry({"all": net}, every=3)
    for step in range(7):
        x, y = batch(step)
        layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()), telemetry=telemetry)
    assert [s.step for s in telemetry.history] == [0, 3, 6]
    assert telemetry.history[1].weights == pytest.approx(weighting.history[3])


def test_repr_shows_the_configuration() -> None:
    lin = nn.Linear(2, 2)
    assert (
        repr(GradNorm(["a", "b"], lin.parameters(), alpha=0.5))
        == "GradNorm(terms=['a', 'b'], alpha=0.5, lr=0.025, optimizer='adam')"
    )
    assert (
        repr(Usefulness(["a", "b"], lin.parameters(), main="a", mode="cosine"))
        == "Usefulness(terms=['a', 'b'], main='a', mode='cosine', lr=0.01, every=1, beta=0.9)"
    )
    assert repr(Fixed({"a": 1.0, "b": 0.5}, main="a")) == "Fixed(weights={'a': 1.0, 'b': 0.5}, main='a')"


def test_usefulness_total_keeps_the_auxiliary_budget() -> None:
    net = Net()
    shared = list(net.trunk[0].parameters()) + list(net.trunk[2].parameters())
    weighting = Usefulness(TERMS, shared, main="main", lr=0.3, total=2.0).double()
    for step in range(5):
        x, y = batch(step)
        layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()))
    assert float(weighting.w[1] + weighting.w[2]) == pytest.approx(2.0)
    assert float(weighting.w[0]) == 1.0 and abs(float(weighting.w[1] - weighting.w[2])) > 1e-3


def test_main_is_never_reported_when_auxiliary_weights_run_negative() -> None:
    with pytest.warns(UserWarning, match="maximised"):
        w = Naive(["main", "aux"], main="main", window=1)
    with torch.no_grad():
        w.raw[1] = -5000.0
    with pytest.warns(UserWarning, match=r"'aux'.*being MAXIMISED"):
        w.weights_for({"main": torch.tensor(1.0), "aux": torch.tensor(1.0)})
    assert w.useless_terms() == ["aux"]


def test_a_learned_weighting_left_out_of_every_optimizer_is_warned_once() -> None:
    net = Net()
    weighting = layerwise.Uncertainty(TERMS)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)  # the weighting's parameters are missing
    x, y = batch(0)
    with pytest.warns(UserWarning, match="Uncertainty: its parameters have received gradients for 20 steps"):
        for _ in range(25):
            opt.zero_grad()
            layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()))
            opt.step()
    assert torch.equal(weighting.log_vars.detach(), torch.zeros(3))  # what the warning says
    good = layerwise.Uncertainty(TERMS)
    opt = torch.optim.SGD([*net.parameters(), *good.parameters()], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(25):
            opt.zero_grad()
            layerwise.backward(net.losses(x, y), good, params=list(net.parameters()))
            opt.step()
    assert good._own_state == "moved"  # watched for one step only: no further host syncs


def test_gradnorm_names_a_term_that_never_reaches_its_parameter_set() -> None:
    net = Net()
    shared = list(net.trunk[4].parameters())  # the output layer: the auxiliary heads never reach it
    weighting = layerwise.GradNorm(TERMS, shared)
    x, y = batch(0)
    before = copy.deepcopy(weighting.state_dict())
    with pytest.raises(ValueError, match=r"GradNorm: loss term\(s\) \[.*'h1'.*\] do not depend on its parameter set W"):
        layerwise.backward(net.losses(x, y), weighting, params=list(net.parameters()))
    assert all(p.grad is None for p in net.parameters())  # nothing was changed
    for k, v in weighting.state_dict().items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True)  # `initial` is NaN until set
        else:
            assert v == before[k], k


@pytest.mark.parametrize("kind", ["none", "fixed", "uncertainty", "gradnorm", "lookahead", "cosine"])
def test_a_framework_owned_backward_gives_the_same_gradients_weights_and_telemetry(kind: str) -> None:
    """backward_fn (a framework's backward, here scaled as a GradScaler would) against layerwise.backward."""
    a, b = Net(), Net()
    wa = None if kind == "none" else make(kind, a).double()
    wb = None if kind == "none" else make(kind, b).double()
    ta = layerwise.GradientTelemetry({"trunk": list(a.trunk.parameters())}, every=2)
    tb = layerwise.GradientTelemetry({"trunk": list(b.trunk.parameters())}, every=2)
    own = [] if wa is None else list(wa.parameters())
    for step in range(3):
        x, y = batch(step)
        for p in [*a.parameters(), *b.parameters(), *own, *([] if wb is None else wb.parameters())]:
            p.grad = None
        total_a = layerwise.backward(a.losses(x, y), wa, params=list(a.parameters()), telemetry=ta)
        total_b = layerwise.backward(
            b.losses(x, y), wb, params=list(b.parameters()), telemetry=tb, backward_fn=lambda t: (8.0 * t).backward()
        )
        torch.testing.assert_close(total_b, total_a, rtol=1e-13, atol=0)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(q.grad, 8.0 * p.grad, rtol=1e-12, atol=1e-14)
        if wa is not None and wb is not None:
            for p, q in zip(wa.parameters(), wb.parameters(), strict=True):
                torch.testing.assert_close(q.grad, 8.0 * p.grad, rtol=1e-12, atol=1e-14)  # scaled as the model's
            assert wb.current == pytest.approx(wa.current, rel=1e-12)
        with torch.no_grad():
            for p, q in zip(a.parameters(), b.parameters(), strict=True):
                p -= 0.1 * p.grad
                q -= 0.1 * q.grad / 8.0
    assert len(ta.history) == 2
    for sa, sb in zip(ta.history, tb.history, strict=True):
        _assert_close_tree(sa.to_dict(), sb.to_dict())


@pytest.mark.parametrize("kind", ["none", "fixed", "uncertainty", "gradnorm"])
def test_weighted_loss_backpropagated_by_the_caller_gives_the_gradients_of_backward(kind: str) -> None:
    """weighted_loss(...) then a framework's backward (two accumulated micro-batches, each divided by 2)
    against layerwise.backward on each micro-batch, halved: the same .grad, the weighting's own parameters included."""
    a, b = Net(), Net()
    wa = None if kind == "none" else make(kind, a).double()
    wb = None if kind == "none" else make(kind, b).double()
    ta = layerwise.GradientTelemetry({"trunk": list(a.trunk.parameters())}, every=2)
    tb = layerwise.GradientTelemetry({"trunk": list(b.trunk.parameters())}, every=2)
    for micro in range(2):
        x, y = batch(micro)
        layerwise.backward(a.losses(x, y), wa, params=list(a.parameters()), telemetry=ta)
        total = layerwise.weighted_loss(b.losses(x, y), wb, params=list(b.parameters()), telemetry=tb)
        assert total.requires_grad
        (total / 2).backward()
    for p in [*a.parameters(), *([] if wa is None else wa.parameters())]:
        p.grad /= 2  # the mean over the two micro-batches
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-14)
    if wa is not None and wb is not None:
        for p, q in zip(wa.parameters(), wb.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-14)
        assert wb.current == pytest.approx(wa.current, rel=1e-12)
    assert [s.step for s in tb.history] == [s.step for s in ta.history] == [0]


def _assert_close_tree(a: object, b: object) -> None:
    """Equal structure; numbers equal to float64 rounding (the gradients are summed in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_close_tree(a[k], b[k])
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_close_tree(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-10, abs=1e-13)
    else:
        assert a == b
