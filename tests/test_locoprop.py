"""LocoProp against slow references: backprop, the closed form, autograd on the local problem."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import LocoProp
from layerwise.locoprop import get_activation


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 6)
    ).double()


def _conv(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 3, stride=2), nn.Flatten(), nn.Linear(8, 4)
    ).double()


def _data(model: nn.Module, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if isinstance(model[0], nn.Conv2d):
        return torch.randn(7, 2, 5, 5, generator=g, dtype=torch.float64), torch.randn(
            7, 4, generator=g, dtype=torch.float64
        )
    return torch.randn(9, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(x), y)


@pytest.mark.parametrize("variant", ["s", "m"])
@pytest.mark.parametrize("make", [_mlp, _conv])
def test_one_inner_sgd_step_is_a_backprop_sgd_step(variant: str, make) -> None:  # type: ignore[no-untyped-def]
    model = make()
    ref = copy.deepcopy(model)
    x, y = _data(model)
    eta, gamma = 0.03, 7.0
    opt = LocoProp(model, lr=eta, variant=variant, gamma=gamma, steps=1, inner="sgd")
    loss = opt.step(lambda: _loss(model, x, y))
    sgd = torch.optim.SGD(ref.parameters(), lr=eta * gamma)
    ref_loss = _loss(ref, x, y)
    ref_loss.backward()
    sgd.step()
    assert torch.equal(loss, ref_loss.detach())
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert all(p.grad is None for p in model.parameters()), "the global backward computed weight gradients"


def _local_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(layer input, pre-activation, dL/d pre-activation) of every Linear/Conv layer, by autograd."""
    rec: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: rec.append((i[0].detach(), o)))
        for m in model
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    loss = _loss(model, x, y)
    for h in hooks:
        h.remove()
    gs = torch.autograd.grad(loss, [o for _, o in rec])
    return [(i, o.detach(), g) for (i, o), g in zip(rec, gs, strict=True)]


def test_exact_s_equals_the_closed_form() -> None:
    model = _mlp()
    ref = copy.deepcopy(model)
    x, y = _data(model)
    gamma, lam = 3.0, 0.5
    recs = _local_grads(ref, x, y)
    LocoProp(model, lr=1.0, variant="s", gamma=gamma, solver="exact", damping=lam).step(lambda: _loss(model, x, y))
    layers = [m for m in ref if isinstance(m, nn.Linear)]
    for layer, new, (inp, _, g) in zip(layers, [m for m in model if isinstance(m, nn.Linear)], recs, strict=True):
        xa = torch.cat([inp, torch.ones(len(inp), 1, dtype=inp.dtype)], 1)
        grad = g.t() @ xa  # ∇_[W b] L
        delta = -gamma * grad @ torch.linalg.inv(lam * torch.eye(xa.shape[1], dtype=xa.dtype) + xa.t() @ xa)
        torch.testing.assert_close(new.weight, layer.weight + delta[:, :-1])
        torch.testing.assert_close(new.bias, layer.bias + delta[:, -1])


def _local_objective(
    layer: nn.Module, w0: list[torch.Tensor], inp: torch.Tensor, target: torch.Tensor, act: str, lam: float
) -> torch.Tensor:
    """Σ F(z) − Σ z·y + (λ/2)‖θ − θ0‖² (the matching loss up to a constant), by autograd."""
    z = layer(inp)
    a = get_activation(act)
    assert a.integral is not None
    prox = sum(((p - q) ** 2).sum() for p, q in zip(layer.parameters(), w0, strict=True))
    return a.integral(z).sum() - (z * target).sum() + 0.5 * lam * prox


@pytest.mark.parametrize("make", [_mlp, _conv])
def test_exact_s_is_the_minimiser_of_the_local_problem(make) -> None:  # type: ignore[no-untyped-def]
    model = make()
    ref = copy.deepcopy(model)
    x, y = _data(model)
    gamma, lam = 2.0, 0.3
    recs = _local_grads(ref, x, y)
    LocoProp(model, lr=1.0, variant="s", gamma=gamma, solver="exact", damping=lam).step(lambda: _loss(model, x, y))
    new_layers = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    old_layers = [m for m in ref if isinstance(m, (nn.Linear, nn.Conv2d))]
    for new, old, (inp, pre, g) in zip(new_layers, old_layers, recs, strict=True):
        obj = _local_objective(new, [p.detach() for p in old.parameters()], inp, pre - gamma * g, "identity", lam)
        grads = torch.autograd.grad(obj, list(new.parameters()))
        for gr in grads:
            assert gr.abs().max() < 1e-9


@pytest.mark.parametrize("act_model", ["tanh", "sigmoid"])
def test_precond_m_decreases_the_local_loss_monotonically_and_reaches_its_minimiser(act_model: str) -> None:
    torch.manual_seed(0)
    act = nn.Tanh() if act_model == "tanh" else nn.Sigmoid()
    model = nn.Sequential(nn.Linear(5, 4), act, nn.Linear(4, 3)).double()
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    gamma, lam = 5.0, 0.1
    inp, pre, g = _local_grads(copy.deepcopy(model), x, y)[0]
    layer0 = copy.deepcopy(model[0])
    w0 = [p.detach().clone() for p in layer0.parameters()]
    target = get_activation(act_model).fn(pre) - gamma * g
    values = []
    for steps in [1, 2, 4, 8, 200]:
        m = copy.deepcopy(model)
        LocoProp(m, lr=1.0, gamma=gamma, solver="precond", damping=lam, steps=steps).step(lambda m=m: _loss(m, x, y))
        values.append(float(_local_objective(m[0], w0, inp, target, act_model, lam).detach()))
    start = float(_local_objective(layer0, w0, inp, target, act_model, lam).detach())
    assert all(b <= a + 1e-12 for a, b in zip([start, *values], values, strict=False)), values
    grads = torch.autograd.grad(_local_objective(m[0], w0, inp, target, act_model, lam), list(m[0].parameters()))
    assert max(float(gr.abs().max()) for gr in grads) < 1e-8


def test_iterative_and_precond_m_solve_the_same_local_problem() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    LocoProp(a, lr=0.02, gamma=4.0, damping=0.5, steps=3000, inner="sgd", inner_decay=False).step(
        lambda: _loss(a, x, y)
    )
    LocoProp(b, lr=1.0, gamma=4.0, damping=0.5, steps=300, solver="precond").step(lambda: _loss(b, x, y))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-9)


def test_precond_s_one_step_equals_exact() -> None:
    a, b = _mlp(), _mlp()
    x, y = _data(a)
    LocoProp(a, lr=0.7, variant="s", gamma=2.0, solver="exact", damping=0.2).step(lambda: _loss(a, x, y))
    LocoProp(b, lr=0.7, variant="s", gamma=2.0, solver="precond", steps=1, damping=0.2).step(lambda: _loss(b, x, y))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_tf_rmsprop_inner_rule_matches_the_tf1_formulas() -> None:
    """T=2 official inner steps on a one-layer model, against the formulas written out by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid()).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
    w, b = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    lr, gamma, mu, rho, eps = 0.01, 10.0, 0.9, 0.9, 1e-5
    opt = LocoProp.official(model, lr=lr, steps=2, inner_options={"momentum": mu, "decay": rho, "eps": eps})
    ((inp, pre, g),) = _local_grads(copy.deepcopy(model), x, y)
    target = torch.sigmoid(pre) - gamma * g
    ms = [torch.ones_like(w), torch.ones_like(b)]
    mom = [torch.zeros_like(w), torch.zeros_like(b)]
    params = [w, b]
    for k in range(2):
        d = torch.sigmoid(inp @ params[0].t() + params[1]) - target
        grads = [d.t() @ inp, d.sum(0)]
        lr_k = lr * max(1 - k / 2, 0.25)
        for i in range(2):
            ms[i] = rho * ms[i] + (1 - rho) * grads[i] ** 2
            mom[i] = mu * mom[i] + lr_k * grads[i] / torch.sqrt(ms[i] + eps)
            params[i] = params[i] - mom[i]
    opt.step(lambda: _loss(model, x, y))
    torch.testing.assert_close(model[0].weight, params[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(model[0].bias, params[1], rtol=1e-12, atol=1e-14)
    assert torch.equal(opt.state[model[0].weight]["ms"], ms[0])


def test_zero_lr_moves_nothing_with_tf1_semantics_and_scheduler_drives_lr() -> None:
    model = _mlp()
    x, y = _data(model)
    before = [p.detach().clone() for p in model.parameters()]
    opt = LocoProp.official(model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: float(e))  # epoch 0 at lr 0, like the warm-up
    opt.step(lambda: _loss(model, x, y))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    sched.step()
    assert all(g["lr"] == 1e-5 for g in opt.param_groups)
    opt.step(lambda: _loss(model, x, y))
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"inner": "adam", "variant": "s"},
        {"inner_chunks": 3, "inner_dtype": torch.bfloat16},
        {"solver": "precond", "damping": 1.0, "refresh_every": 2, "steps": 2},
    ],
)
def test_state_dict_round_trip_resumes_bit_identically(kwargs: dict) -> None:  # type: ignore[type-arg]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 6))
    xs = [torch.randn(8, 6) for _ in range(6)]

    def make(m: nn.Module) -> LocoProp:
        return LocoProp(m, lr=1e-3, other_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2), **kwargs)

    opt = make(model)
    for x in xs[:3]:
        opt.step(lambda x=x: F.mse_loss(model(x), x))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for x in xs[3:]:
        opt.step(lambda x=x: F.mse_loss(model(x), x))
    torch.manual_seed(1)
    resumed = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 6))
    resumed.load_state_dict(saved_model)
    opt2 = make(resumed)
    opt2.load_state_dict(saved_opt)
    for x in xs[3:]:
        opt2.step(lambda x=x: F.mse_loss(resumed(x), x))
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


class _Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        h = h + torch.sigmoid(self.hidden(h))
        return self.out(h)


def test_traced_custom_model_pairs_activations_and_keeps_the_invariant() -> None:
    torch.manual_seed(0)
    model = _Skip().double()
    ref = copy.deepcopy(model)
    opt = LocoProp(model, lr=0.1, gamma=2.0, steps=1, inner="sgd")
    assert opt.layers == [("inp", "tanh"), ("hidden", "sigmoid"), ("out", "identity")]
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    opt.step(lambda: F.mse_loss(model(x), y))
    F.mse_loss(ref(x), y).backward()
    torch.optim.SGD(ref.parameters(), lr=0.2).step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_declared_layers_override_discovery() -> None:
    model = _mlp()
    opt = LocoProp(model, layers=[(model[0], "tanh"), (model[2], "sigmoid"), (model[4], "relu"), (model[6], "sigmoid")])
    assert opt.layers[-1] == ("6", "sigmoid")


def test_unsupported_parameters_are_rejected_by_name_or_given_to_the_other_optimizer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"1\.weight, 1\.bias.*other_optimizer"):
        LocoProp(model)
    opt = LocoProp(model, other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    before = model[1].weight.detach().clone()
    x = torch.randn(8, 4)
    opt.step(lambda: F.mse_loss(model(x), x[:, :2]))
    assert not torch.equal(model[1].weight, before)


def test_bad_closures_give_clear_errors_and_leave_parameters_intact() -> None:
    model = _mlp()
    x, y = _data(model)
    before = copy.deepcopy(model.state_dict())
    opt = LocoProp(model)
    with pytest.raises(RuntimeError, match="found no backward pass .* call loss.backward.. first"):
        opt.step()
    with pytest.raises(ValueError, match="no autograd graph and ran no backward pass"):
        opt.step(lambda: _loss(model, x, y).detach())
    with pytest.raises(ValueError, match="scalar loss"):
        opt.step(lambda: F.mse_loss(model(x), y, reduction="none"))
    with pytest.raises(FloatingPointError, match="no parameter or buffer .BatchNorm statistics. was changed"):
        opt.step(lambda: _loss(model, x, y) * float("nan"))

    def twice() -> torch.Tensor:
        return _loss(model, x, y) + _loss(model, x, y)

    with pytest.raises(RuntimeError, match="ran 2 times"):
        opt.step(twice)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"variant": "q"}, "variant"),
        ({"solver": "exact"}, "LocoProp-S only"),
        ({"solver": "precond"}, "damping > 0"),
        ({"inner": "lion"}, "inner"),
        ({"inner_options": {"beta": 1}}, "inner_options key"),
        ({"steps": 0}, "steps"),
        ({"layers": [(nn.Linear(2, 2), "tanh")]}, "not a submodule"),
        ({"layers": [("0", "tanh")]}, "layers\\[0\\]"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValueError, TypeError), match=match):
        LocoProp(_mlp(), **kwargs)


def test_parameters_iterator_instead_of_model_is_explained() -> None:
    with pytest.raises(TypeError, match="not LocoProp\\(model.parameters"):
        LocoProp(_mlp().parameters())  # type: ignore[arg-type]


def _tokens(seed: int = 0) -> nn.Sequential:
    """An MLP applied to every token of a (batch, length, features) input, as in a transformer."""
    return _mlp(seed)


@pytest.mark.parametrize("damping", [0.0, 0.5])
@pytest.mark.parametrize("variant", ["s", "m"])
@pytest.mark.parametrize("make", [_mlp, _conv, _tokens])
def test_inner_chunks_step_k_follows_slice_k_mod_n_scaled_to_the_batch(variant: str, make, damping: float) -> None:  # type: ignore[no-untyped-def]
    """Slow reference: every layer's local loss on slice k mod n by autograd, times batch/slice rows, plus the
    proximal term's gradient (not scaled: it is not a sum over examples), as SGD steps."""
    model = make()
    ref = copy.deepcopy(model)
    x, y = _data(model)  # 9 or 7 examples: slices of 3 (n=3), or 3, 2, 2 (n=3 on 7), so uneven slices too
    if make is _tokens:
        x, y = x[:8].reshape(4, 2, 6), y[:8].reshape(4, 2, 6)  # slices of 2, 1, 1 sequences
    eta, gamma, steps, n = 0.02, 3.0, 4, 3
    recs = _local_grads(ref, x, y)
    opt = LocoProp(
        model,
        lr=eta,
        variant=variant,
        gamma=gamma,
        steps=steps,
        inner="sgd",
        inner_decay=False,
        inner_chunks=n,
        damping=damping,
    )
    opt.step(lambda: _loss(model, x, y))
    rows = len(x)
    bounds = [0]
    for j in range(n):
        bounds.append(bounds[-1] + rows // n + (1 if j < rows % n else 0))
    act = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu"}
    mods = list(ref)
    layers = [(i, m) for i, m in enumerate(mods) if isinstance(m, (nn.Linear, nn.Conv2d))]
    news = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    for (i, old), new, (inp, pre, g) in zip(layers, news, recs, strict=True):
        name = act.get(type(mods[i + 1]), "identity") if i + 1 < len(mods) and variant == "m" else "identity"
        f = get_activation(name)
        target = (f.fn(pre) if variant == "m" else pre) - gamma * g
        anchor = [p.detach().clone() for p in old.parameters()]
        for k in range(steps):
            s = slice(bounds[k % n], bounds[k % n + 1])
            obj = _local_objective(old, anchor, inp[s], target[s], name, 0.0)
            grads = torch.autograd.grad(obj, list(old.parameters()))
            with torch.no_grad():
                for p, gr, a in zip(old.parameters(), grads, anchor, strict=True):
                    p.sub_(gr * (rows / (s.stop - s.start)) + damping * (p - a), alpha=eta)
        for p, q in zip(new.parameters(), old.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    # and the slices matter: the whole batch at every step gives another update
    whole = make()
    LocoProp(whole, lr=eta, variant=variant, gamma=gamma, steps=steps, inner="sgd", inner_decay=False).step(
        lambda: _loss(whole, x, y)
    )
    assert not all(torch.allclose(p, q) for p, q in zip(whole.parameters(), model.parameters(), strict=True))


def test_bfloat16_bias_gradient_of_a_linear_layer_on_4d_input_sums_over_all_but_the_features() -> None:
    def step(dtype):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
        x = torch.randn(6, 2, 3, 5)  # (batch, height, width, features): channels-last, not NCHW
        before = [p.detach().clone() for p in model.parameters()]
        LocoProp(model, lr=1e-2, steps=2, inner="sgd", inner_dtype=dtype).step(lambda: (model(x) ** 2).mean())
        return [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]

    for e, lo in zip(step(None), step(torch.bfloat16), strict=True):
        assert e.shape == lo.shape
        assert float((lo - e).norm() / e.norm()) < 0.02


def test_inner_chunks_is_checked_and_a_too_small_batch_changes_nothing() -> None:
    with pytest.raises(ValueError, match="Invalid inner_chunks=0"):
        LocoProp(_mlp(), inner_chunks=0)
    with pytest.raises(ValueError, match="inner_chunks applies to solver='iterative' only"):
        LocoProp(_mlp(), solver="precond", damping=1.0, inner_chunks=2)
    with pytest.raises(ValueError, match="Invalid inner_chunks=4 with steps=3.*1 slice\\(s\\).*never be used"):
        LocoProp(_mlp(), steps=3, inner_chunks=4)
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    opt = LocoProp(model, inner_chunks=4)
    x, y = _data(model)
    with pytest.raises(ValueError, match="inner_chunks=4 splits every batch into 4 slices.*this batch has 3 rows"):
        opt.step(lambda: _loss(model, x[:3], y[:3]))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not opt.state


def _autoencoder_step(inner_dtype, steps=10, inner_chunks=1):
    from layerwise.models import deep_autoencoder, sigmoid_cross_entropy

    model = deep_autoencoder(64, generator=torch.Generator().manual_seed(0))
    x = torch.rand(200, 64, generator=torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in model.parameters()]
    opt = LocoProp(model, lr=1e-4, steps=steps, inner_dtype=inner_dtype, inner_chunks=inner_chunks)
    opt.step(lambda: sigmoid_cross_entropy(model(x), x))
    return [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]


@pytest.mark.parametrize("chunks", [1, 2])
def test_bfloat16_inner_products_give_the_float32_update_within_a_bounded_error(chunks):
    exact = _autoencoder_step(None, inner_chunks=chunks)
    low = _autoencoder_step(torch.bfloat16, inner_chunks=chunks)
    for e, lo in zip(exact, low, strict=True):
        assert lo.dtype == torch.float32  # master weights stay float32
        rel = float((lo - e).norm() / e.norm())
        assert rel < 0.02, rel  # bf16 products of the weight CHANGE only: well under 1% in practice
    # and the bound is not vacuous: the updates are far from zero and the path really is low precision
    assert any(float((lo - e).norm()) > 0 for e, lo in zip(exact, low, strict=True))
    same = _autoencoder_step(torch.float32, inner_chunks=chunks)  # the parameters' own dtype: the plain path
    for e, s in zip(exact, same, strict=True):
        assert torch.equal(e, s)


def test_inner_dtype_is_checked():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="Invalid inner_dtype=torch.int8"):
        LocoProp(model, inner_dtype=torch.int8)
    with pytest.raises(ValueError, match="inner_dtype applies to solver='iterative' only"):
        LocoProp(model, solver="precond", damping=1.0, inner_dtype=torch.bfloat16)


def test_a_nan_batch_leaves_parameters_and_batchnorm_statistics_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    opt = LocoProp(model, lr=1e-3, other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    x = torch.randn(8, 4)
    opt.step(lambda: model(x).pow(2).mean())  # one good step: the statistics are not at their initial values
    before = copy.deepcopy(model.state_dict())
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(FloatingPointError, match="no parameter or buffer .BatchNorm statistics. was changed"):
        opt.step(lambda: model(bad).pow(2).mean())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running_mean/var and num_batches_tracked included
