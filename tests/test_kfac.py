import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from layerwise import KFAC


def _closure(opt, model, x, loss_fn):
    def closure():
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out)
        opt.backward(loss, out)
        return loss

    return closure


def test_first_step_equals_dense_kronecker_reference():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    model = nn.Sequential(layer)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    loss_fn = lambda out: 0.5 * ((out - y) ** 2).sum() / len(x)  # noqa: E731
    w0 = torch.cat([layer.weight, layer.bias[:, None]], 1).detach().clone()
    # slow reference: explicit Kronecker-factored Fisher with factored Tikhonov damping
    a = torch.cat([x, torch.ones(8, 1)], 1)
    out = x @ w0[:, :3].T + w0[:, 3]
    g = torch.autograd.grad(loss_fn(out.requires_grad_()), out)[0]
    grad = g.T @ a
    A, G = a.T @ a / 8, g.T @ g * 8
    lam, lr = 0.1, 0.5
    pi = ((A.trace() / 4) / (G.trace() / 2)).sqrt()
    F = torch.kron(A + pi * lam**0.5 * torch.eye(4), G + lam**0.5 / pi * torch.eye(2))
    delta = torch.linalg.solve(F, grad.T.reshape(-1)).reshape(4, 2).T  # column-major vec
    opt = KFAC(model, lr=lr, damping=lam, momentum=0.0, likelihood="empirical")
    opt.step(_closure(opt, model, x, loss_fn))
    w1 = torch.cat([layer.weight, layer.bias[:, None]], 1).detach()
    torch.testing.assert_close(w1, w0 - lr * delta, rtol=1e-5, atol=1e-6)


def test_bernoulli_fisher_matches_sigmoid_cross_entropy_expectation():
    """E over sampled targets of G equals (1/n) sum_b diag(p_b (1 - p_b)) for sigmoid outputs."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    x = torch.randn(16, 4)
    opt = KFAC(nn.Sequential(layer), lr=0.0, ema_decay=0.0, likelihood="bernoulli", seed=1)
    loss_fn = lambda out: nn.functional.binary_cross_entropy_with_logits(out, torch.rand_like(out))  # noqa: E731
    total = torch.zeros(3, 3)
    for _ in range(800):
        opt.step(_closure(opt, nn.Sequential(layer), x, loss_fn))
        total += opt.state[layer.weight]["G"]
    p = torch.sigmoid(layer(x)).detach()
    expected = torch.diag((p * (1 - p)).mean(0))
    torch.testing.assert_close(total / 800, expected, atol=0.01, rtol=0.05)


def test_state_dict_round_trip_is_bit_identical():
    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 5))
        return model, KFAC(model, lr=0.05, damping=1.0, inv_every=2, seed=3)

    x = torch.rand(10, 5)
    loss_fn = lambda out: nn.functional.binary_cross_entropy_with_logits(out, x, reduction="sum") / 10  # noqa: E731
    model, opt = make()
    for _ in range(3):
        opt.step(_closure(opt, model, x, loss_fn))
    saved = ({k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict())
    import copy

    saved = copy.deepcopy(saved)
    for _ in range(3):
        opt.step(_closure(opt, model, x, loss_fn))
    model2, opt2 = make()
    model2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    for _ in range(3):
        opt2.step(_closure(opt2, model2, x, loss_fn))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters(), strict=True))


def test_rejects_parameters_it_cannot_train():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(
        ValueError, match=r"parameter '1.weight' belongs to another kind of module .* separate optimizer"
    ):
        KFAC(model)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": -1.0}, "Invalid lr=-1.0"),
        ({"damping": 0.0}, "Invalid damping=0.0"),
        ({"inv_every": 0}, "Invalid inv_every=0"),
        ({"likelihood": "poisson"}, "Invalid likelihood='poisson'"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KFAC(nn.Linear(2, 2), **kwargs)


def test_step_needs_closure_and_repr():
    opt = KFAC(nn.Linear(2, 2), lr=0.1)
    with pytest.raises(ValueError, match="samples Fisher targets from the model's output"):
        opt.step()
    assert repr(opt) == (
        "KFAC(lr=0.1, damping=0.001, momentum=0.9, ema_decay=0.95, cov_every=1, inv_every=20, "
        "weight_decay=0.0, likelihood='bernoulli', seed=0)"
    )


def test_a_closure_that_calls_loss_backward_instead_of_opt_backward_is_an_error():
    """Failed silently on 0.5.0: without opt.backward no factors were gathered and K-FAC was momentum SGD."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    opt = KFAC(model, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match=r"did not call opt.backward\(loss, output\).*no parameter was changed"):
        opt.step(closure)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize(
    "likelihood,loss_fn,warns",
    [
        ("bernoulli", lambda out, y: F.cross_entropy(out, y), True),
        ("categorical", lambda out, y: F.cross_entropy(out, y), False),
        ("bernoulli", lambda out, y: F.mse_loss(out, F.one_hot(y, 3).float()), True),
        ("gaussian", lambda out, y: 0.5 * F.mse_loss(out, F.one_hot(y, 3).float()), False),
        ("bernoulli", lambda out, y: F.binary_cross_entropy_with_logits(out, F.one_hot(y, 3).float()), False),
        ("empirical", lambda out, y: F.cross_entropy(out, y), False),
    ],
)
def test_a_likelihood_that_does_not_match_the_loss_is_warned_once(likelihood, loss_fn, warns):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    opt = KFAC(model, lr=0.1, likelihood=likelihood)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def closure():
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        opt.backward(loss, out)
        return loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            opt.step(closure)
    messages = [str(w.message) for w in caught if "samples the Fisher" in str(w.message)]
    assert len(messages) == (1 if warns else 0), messages


def test_categorical_fisher_of_a_sequence_output_samples_per_position():
    # (batch, position, class) logits, as a transformer's: one class drawn per position, summed over positions
    from layerwise.optim._kfac import _sampled_nll

    logits = torch.randn(2, 5, 3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    nll = _sampled_nll("categorical", logits, gen)
    target = torch.multinomial(
        torch.softmax(logits.reshape(10, 3), -1), 1, generator=torch.Generator().manual_seed(0)
    ).squeeze(-1)
    expected = -torch.log_softmax(logits.reshape(10, 3), -1)[torch.arange(10), target].sum() / 2
    torch.testing.assert_close(nll, expected)


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("cov_every", [1, 2])
def test_backward_then_step_equals_the_closure_for_the_empirical_fisher_with_accumulation(cov_every):
    """The standard contract (two accumulated micro-batches per step) against opt.backward on the whole batch."""
    a, b = _mlp(0), _mlp(0)
    kw = dict(lr=0.05, damping=1e-2, inv_every=1, cov_every=cov_every, likelihood="empirical")
    oa, ob = KFAC(a, **kw), KFAC(b, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
        oa.step(_closure(oa, a, x, lambda out: F.cross_entropy(out, y)))
        b(x).sum()  # a forward with gradients on, never backpropagated: it keeps nothing
        ob.zero_grad()
        for half in (slice(0, 5), slice(5, 10)):
            (F.cross_entropy(b(x[half]), y[half]) / 2).backward()
        assert ob.step() is None
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13)
    assert not torch.equal(a[0].weight, _mlp(0)[0].weight)


def test_backward_then_step_refuses_a_sampled_fisher_with_the_fix():
    model = _mlp(0)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    opt = KFAC(model, likelihood="categorical")
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match=r"opt.backward\(loss, output\), or likelihood='empirical'"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_telemetry_per_term_backward_passes_do_not_enter_the_empirical_fisher():
    """layerwise.backward with telemetry (one partial backward per term) steps as the plain total's backward."""
    import layerwise

    a, b = _mlp(0), _mlp(0)
    kw = dict(lr=0.05, damping=1e-2, inv_every=1, likelihood="empirical")
    oa, ob = KFAC(a, **kw), KFAC(b, **kw)
    tel = layerwise.GradientTelemetry({"all": b}, every=1)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        x, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
        for model, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            out = model(x)
            terms = {"fit": F.cross_entropy(out, y), "small": 1e-2 * out.pow(2).mean()}
            if model is a:
                sum(terms.values()).backward()
            else:
                layerwise.backward(terms, params=list(b.parameters()), telemetry=tel)
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13)
    assert len(tel.history) == 3


def test_a_grad_scaler_step_is_the_unscaled_step_skips_on_inf_and_refuses_an_earlier_unscale():
    """K-FAC's factors come from layer-output gradients the scaler cannot unscale: it unscales them itself."""
    a, b = _mlp(0), _mlp(0)
    kw = dict(lr=0.05, damping=1e-2, inv_every=1, likelihood="empirical", momentum=0.5)
    plain, scaled = KFAC(a, **kw), KFAC(b, **kw)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        x, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
        plain.zero_grad()
        F.cross_entropy(a(x), y).backward()
        plain.step()
        scaled.zero_grad()
        scaler.scale(F.cross_entropy(b(x), y)).backward()
        scaler.step(scaled)
        scaler.update()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12)
    params = [p.detach().clone() for p in b.parameters()]
    state = {k: v.clone() for k, v in scaled.state[b[0].weight].items()}
    scaled.zero_grad()
    scaler.scale(F.cross_entropy(b(x), y) * float("inf")).backward()
    scaler.step(scaled)  # skipped
    scaler.update()
    assert scaler.get_scale() == 512.0
    scaled.zero_grad()
    scaler.scale(F.cross_entropy(b(x), y)).backward()
    scaler.unscale_(scaled)
    with pytest.raises(RuntimeError, match=r"KFAC under a GradScaler: scaler.unscale_\(opt\) was called before"):
        scaler.step(scaled)
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), params, strict=True))
    for k, v in scaled.state[b[0].weight].items():
        assert torch.equal(v, state[k]), k
