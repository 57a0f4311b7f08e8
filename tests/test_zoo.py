"""Every capability on a zoo of real architectures (tests/zoo.py), in float64, against slow references.

References are independent of the library's hooks: a layer's pre-activation â and ∂L/∂â come from a
"probe" (the layer's output plus a zero tensor whose gradient is ∂L/∂â, added before any in-place op
can touch it), local objectives are differentiated through the module's own forward
(``torch.func.functional_call``), and full-model updates are compared with plain backprop.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

import layerwise
from layerwise import KFAC, LocoProp
from layerwise.taps import Taps
from layerwise.telemetry import GradientTelemetry
from layerwise.terms import _linear as telemetry_linear
from layerwise.weighting import GradNorm
from zoo import CASES, Case

ETA, GAMMA = 0.05, 3.0
EXCLUDE = {"transformer_tied": ["head"]}  # the tied head shares the embedding's weight


def _run(case: Case, model: nn.Module) -> Tensor:
    x, y = case.batch()
    return case.loss(model(x), y)


# Most weights in nn.MultiheadAttention or a recurrent layer: LocoProp warns that it trains under half.
SMALL_SHARE = {"transformer_mha", "lstm", "gru", "rnn"}


def _locoprop(case: Case, model: nn.Module, extra_exclude: tuple[str, ...] = (), **kwargs: object) -> LocoProp:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        opt = LocoProp(
            model,
            exclude=[*EXCLUDE.get(case.name, []), *extra_exclude],
            other_optimizer=lambda ps: torch.optim.SGD(ps, lr=ETA * GAMMA),
            **kwargs,  # type: ignore[arg-type]
        )
    small = [w for w in seen if "LocoProp trains" in str(w.message)]
    assert bool(small) == (case.name in SMALL_SHARE), [str(w.message) for w in seen]
    assert len(small) == len(seen), [str(w.message) for w in seen]
    return opt


def _probe(model: nn.Module, names: list[str]) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, Tensor]]:
    """Hooks recording (input, pre-activation) copies and adding a zero probe to each named layer's output."""
    rec: dict[str, tuple[Tensor, Tensor]] = {}
    probes: dict[str, Tensor] = {}
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable[..., Tensor]:
        def h(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> Tensor:
            rec[name] = (inp[0].detach().clone(), out.detach().clone())
            probes[name] = torch.zeros_like(out, requires_grad=True)
            return out + probes[name]

        return h

    for n in names:
        modules[n].register_forward_hook(hook(n))
    return rec, probes


def _local_data(case: Case, model: nn.Module, names: list[str]) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """(ŷ, â, ∂L/∂â) of each named layer, by probes on a copy of the model."""
    ref = copy.deepcopy(model)
    rec, probes = _probe(ref, names)
    grads = torch.autograd.grad(_run(case, ref), [probes[n] for n in names])
    return {n: (*rec[n], g) for n, g in zip(names, grads, strict=True)}


@pytest.mark.parametrize("name", list(CASES))
def test_locoprop_trains_every_parameter_or_hands_it_to_other_optimizer(name: str) -> None:
    case = CASES[name]
    model = case.build()
    opt = _locoprop(case, model)
    mine = {id(p) for g in opt.param_groups for p in g["params"]}
    others = {id(p) for g in opt.other_optimizer.param_groups for p in g["params"]} if opt.other_optimizer else set()
    assert not mine & others
    assert mine | others == {id(p) for p in model.parameters() if p.requires_grad}
    assert mine, "LocoProp found no layer"


@pytest.mark.parametrize("variant", ["s", "m"])
@pytest.mark.parametrize("name", list(CASES))
def test_one_inner_sgd_step_is_a_backprop_sgd_step_on_the_whole_model(name: str, variant: str) -> None:
    """The paper's invariant on every layer LocoProp trains; other_optimizer = SGD(ηγ) makes it the whole model."""
    case = CASES[name]
    model = case.build()
    ref = copy.deepcopy(model)
    opt = _locoprop(case, model, lr=ETA, variant=variant, gamma=GAMMA, steps=1, inner="sgd")
    loss = opt.step(lambda: _run(case, model))
    ref_loss = _run(case, ref)
    ref_loss.backward()
    torch.optim.SGD(ref.parameters(), lr=ETA * GAMMA).step()
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-13, atol=1e-13)
    moved = 0
    for (n, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{name}.{n}: {m}")
        moved += int(not torch.equal(p, case.build().get_parameter(n)))
    assert moved > 0
    for b, c in zip(model.buffers(), ref.buffers(), strict=True):  # BatchNorm statistics: one forward each
        torch.testing.assert_close(b, c)


_F: dict[str, Callable[[Tensor], Tensor]] = {  # F with F' = f, written out here (not the library's registry)
    "identity": lambda z: 0.5 * z * z,
    "relu": lambda z: 0.5 * torch.clamp(z, min=0) ** 2,
    "tanh": lambda z: torch.log(torch.cosh(z)),
    "sigmoid": lambda z: torch.log1p(torch.exp(z)),
    "softmax(dim=1)": lambda z: torch.logsumexp(z, dim=1),
}
_f: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda z: z,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax(dim=1)": lambda z: torch.softmax(z, dim=1),
}


def _local_gradient(
    module: nn.Module, old: dict[str, Tensor], x: Tensor, target: Tensor, act: str, lam: float
) -> list[Tensor]:
    """∇_θ [Σ F(z) − Σ z·target + (λ/2)‖θ − θ_old‖²] at the module's current θ, z = module(x) (its own forward)."""
    params = {k: v.detach().clone().requires_grad_() for k, v in module.named_parameters()}
    z = functional_call(module, params, (x,))
    obj = _F[act](z).sum() - (z * target).sum() + 0.5 * lam * sum(((params[k] - old[k]) ** 2).sum() for k in params)
    return list(torch.autograd.grad(obj, list(params.values())))


@pytest.mark.parametrize("solver", ["exact", "precond"])
@pytest.mark.parametrize("name", list(CASES))
def test_closed_form_solvers_reach_the_minimiser_of_each_local_problem(name: str, solver: str) -> None:
    """exact (S) and precond (M, many steps): the local objective's gradient, by autograd through the
    module's own forward (padding="same", strides, depthwise and grouped convs, BatchNorm'd inputs),
    vanishes at the new weights."""
    case = CASES[name]
    model = case.build()
    lam, variant = 10.0, ("s" if solver == "exact" else "m")
    opt = _locoprop(case, model, lr=1.0, variant=variant, gamma=GAMMA, solver=solver, damping=lam, steps=2000)
    layers = dict(opt.layers)
    data = _local_data(case, model, list(layers))
    old = {n: {k: v.detach().clone() for k, v in model.get_submodule(n).named_parameters()} for n in layers}
    opt.step(lambda: _run(case, model))
    for n, act in layers.items():
        x, pre, g = data[n]
        act = act if variant == "m" else "identity"
        target = _f[act](pre) - GAMMA * g
        grads = _local_gradient(model.get_submodule(n), old[n], x, target, act, lam)
        scale = (
            max(float(gr.abs().max()) for gr in _local_gradient(model.get_submodule(n), old[n], x, target, act, 0.0))
            + 1.0
        )
        worst = max(float(gr.abs().max()) for gr in grads)
        assert worst < 1e-8 * scale, (name, n, act, worst)


def test_activations_and_their_arguments_are_read_from_the_zoo() -> None:
    expect = {
        "resnet": {
            "conv1": "identity",
            "layer1.conv1": "identity",
            "layer2.downsample.0": "identity",
            "fc": "identity",
        },
        "vgg": {"0": "relu", "9": "relu", "11": "identity"},
        "vgg_bn": {"0": "identity", "3": "identity", "12": "relu"},  # convs that feed a BatchNorm: identity
        "mobile": {"expand": "identity", "project": "identity", "classifier": "softmax(dim=1)"},
        "mixer": {"blocks.0.token_mlp.0": "identity", "head": "identity"},  # GELU: no matching loss
        "seq_of_blocks": {"0.conv": "tanh", "1.conv": "tanh", "3": "sigmoid", "5": "identity"},
        "transformer": {"blocks.0.attn.q": "identity", "blocks.1.mlp.0": "identity", "head": "identity"},
    }
    for name, pairs in expect.items():
        layers = dict(_locoprop(CASES[name], CASES[name].build()).layers)
        for layer, act in pairs.items():
            assert layers[layer] == act, (name, layer, layers.get(layer))
    mha = dict(_locoprop(CASES["transformer_mha"], CASES["transformer_mha"].build()).layers)
    assert not any(".attn." in n for n in mha)  # nn.MultiheadAttention goes to other_optimizer, out_proj included


def test_a_tied_head_is_rejected_with_the_fix_and_nothing_changes() -> None:
    model = CASES["transformer_tied"].build()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"'head' shares a parameter with 'embed'.*exclude=\['head'\]"):
        LocoProp(model, other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def _terms(case: Case, model: nn.Module, taps: Taps) -> dict[str, Tensor]:
    x, y = case.batch()
    out = model(x)
    return {"main": case.loss(out, y), "aux": taps[case.tap].square().mean(), "reg": 1e-2 * out.square().mean()}


@pytest.mark.parametrize("factored", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_backward_with_a_learned_weighting_and_telemetry_equals_autograd(
    name: str, factored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """layerwise.backward with three terms (one on a tapped block) and GradNorm leaves Σ w_k ∇L_k in .grad;
    the telemetry's per-term norms and cosines are autograd's, with the factored Linear path forced on or off."""
    monkeypatch.setattr(telemetry_linear, "factored_is_cheaper", lambda *a: factored)
    case = CASES[name]
    model = case.build()
    ref = copy.deepcopy(model)
    params = [p for p in model.parameters() if p.requires_grad]
    shared = list(model.get_submodule(case.tap).parameters()) or params
    weighting = GradNorm(["main", "aux", "reg"], shared, warn_useless=False).double().to(params[0].device)
    telemetry = GradientTelemetry({"all": params, "tap": shared}, model=model)
    planned: list[int] = []
    plan = telemetry_linear.plan_factors

    def spy(*a: object, **k: object) -> list[telemetry_linear.LinearFactor]:
        got = plan(*a, **k)  # type: ignore[arg-type]
        planned.append(len(got))
        return got

    monkeypatch.setattr("layerwise.terms._gradients.plan_factors", spy)
    with Taps(model, [case.tap]) as taps:
        layerwise.backward(_terms(case, model, taps), weighting, params=params, telemetry=telemetry)
    assert (sum(planned) > 0) == (factored and any(type(m) is nn.Linear for m in model.modules()))
    w = weighting.current
    with Taps(ref, [case.tap]) as ref_taps:
        terms = _terms(case, ref, ref_taps)
    ref_params = [p for p in ref.parameters() if p.requires_grad]
    per = {k: torch.autograd.grad(v, ref_params, retain_graph=True, allow_unused=True) for k, v in terms.items()}
    for i, p in enumerate(params):
        expected = sum(w[k] * (g[i] if g[i] is not None else torch.zeros_like(p)) for k, g in per.items())
        torch.testing.assert_close(p.grad, expected, rtol=1e-10, atol=1e-12)
    snap = telemetry.history[-1]
    flat = {
        k: torch.cat(
            [(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, ref_params, strict=True)]
        )
        for k, g in per.items()
    }
    for k in terms:
        assert snap.norms["all"][k] == pytest.approx(float(flat[k].norm()), rel=1e-9, abs=1e-12)
    cos = F.cosine_similarity(flat["main"], flat["aux"], dim=0)
    assert snap.cosines["all"][0][1] == pytest.approx(float(cos), rel=1e-8, abs=1e-10)


_KFAC_CASES = ["vgg", "vgg_bn", "mixer", "transformer", "transformer_mha", "seq_of_blocks", "lstm"]


def _only_linear_trainable(model: nn.Module) -> list[nn.Linear]:
    """Freeze every parameter that no nn.Linear owns (K-FAC trains nn.Linear only); the Linear layers that run."""
    linear = [m for m in model.modules() if type(m) is nn.Linear]
    owned = {id(p) for m in linear for p in m.parameters()}
    for p in model.parameters():
        if id(p) not in owned:
            p.requires_grad_(False)
    return linear


@pytest.mark.parametrize("name", _KFAC_CASES)
def test_kfac_first_step_equals_the_dense_kronecker_reference(name: str) -> None:
    case = CASES[name]
    model = case.build()
    if name == "transformer_mha":
        for blk in model.blocks:  # out_proj is never called as a module: K-FAC cannot see it (tested below)
            blk.attn.attn.out_proj.requires_grad_(False)
    linear = [m for m in _only_linear_trainable(model) if m.weight.requires_grad]
    names = {m: n for n, m in model.named_modules()}
    lam, lr = 0.1, 0.5
    data = _local_data(case, model, [names[m] for m in linear])
    expected = {}
    for m in linear:
        a, _, g = data[names[m]]
        a, g = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
        a1 = torch.cat([a, a.new_ones(len(a), 1)], 1) if m.bias is not None else a
        n = len(a1)
        grad = g.T @ a1
        big_a, big_g = a1.T @ a1 / n, g.T @ g * n
        pi = ((big_a.trace() / big_a.shape[0]) / (big_g.trace() / big_g.shape[0])).sqrt()
        eye = lambda n: torch.eye(n, dtype=a.dtype, device=a.device)  # noqa: E731
        fisher = torch.kron(big_a + pi * lam**0.5 * eye(len(big_a)), big_g + lam**0.5 / pi * eye(len(big_g)))
        delta = torch.linalg.solve(fisher, grad.T.reshape(-1)).reshape(a1.shape[1], g.shape[1]).T
        w0 = m.weight.detach() if m.bias is None else torch.cat([m.weight.detach(), m.bias.detach()[:, None]], 1)
        expected[m] = w0 - lr * delta
    opt = KFAC(model, lr=lr, damping=lam, momentum=0.0, likelihood="empirical")
    x, y = case.batch()

    def closure() -> Tensor:
        opt.zero_grad()
        out = model(x)
        loss = case.loss(out, y)
        opt.backward(loss, out)
        return loss

    opt.step(closure)
    for m in linear:
        w1 = m.weight.detach() if m.bias is None else torch.cat([m.weight.detach(), m.bias.detach()[:, None]], 1)
        torch.testing.assert_close(w1, expected[m], rtol=1e-9, atol=1e-11, msg=lambda s, m=m: f"{names[m]}: {s}")


def test_kfac_rejects_what_it_cannot_train_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"parameter 'pos' belongs to another kind of module.*freeze it"):
        KFAC(CASES["transformer"].build())
    tied = CASES["transformer_tied"].build()
    for n, p in tied.named_parameters():
        p.requires_grad_(n.startswith("head") or n.startswith("embed") or ".mlp." in n)
    with pytest.raises(ValueError, match=r"'embed' .*shared with 'head'|'head' .*shared with 'embed'"):
        KFAC(tied)
    mha = CASES["transformer_mha"].build()
    _only_linear_trainable(mha)
    for blk in mha.blocks:
        blk.attn.attn.out_proj.requires_grad_(True)  # an nn.Linear subclass that MHA never calls as a module
    before = copy.deepcopy(mha.state_dict())
    opt = KFAC(mha, lr=0.1, likelihood="categorical")
    x, y = CASES["transformer_mha"].batch()

    def closure() -> Tensor:
        opt.zero_grad()
        out = mha(x)
        loss = CASES["transformer_mha"].loss(out, y)
        opt.backward(loss, out)
        return loss

    with pytest.raises(RuntimeError, match=r"out_proj' has a gradient but its forward was never called"):
        opt.step(closure)
    for k, v in mha.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_taps_keep_every_time_step_of_a_recurrent_layer(name: str) -> None:
    case = CASES[name]
    model = case.build()
    x, _ = case.batch()
    with Taps(model, ["rnn"]) as taps:
        model(x)
        hidden = taps["rnn"]
    expected = model.rnn(x)[0]
    assert hidden.shape == (x.shape[0], x.shape[1], expected.shape[-1])
    torch.testing.assert_close(hidden, expected)


def test_taps_keep_a_blocks_feature_maps_and_reject_an_output_rewritten_in_place() -> None:
    model = CASES["resnet"].build().eval()
    x, _ = CASES["resnet"].batch()
    with Taps(model, ["layer1", "bn1"]) as taps:
        model(x)
        block = taps["layer1"]
        with pytest.raises(RuntimeError, match=r"Tap 'bn1'.*modified in place.*inplace=False"):
            taps["bn1"]  # nn.ReLU(inplace=True) rewrote it
    stem = model.relu(model.bn1(model.conv1(x)))
    torch.testing.assert_close(block, model.layer1(stem))
    assert block.shape == (x.shape[0], 8, 8, 8)


_SETTINGS = {
    "precond-m": dict(solver="precond", lr=1.0, steps=3, gamma=GAMMA, damping=10.0),
    "exact-s": dict(variant="s", solver="exact", lr=1.0, gamma=GAMMA, damping=10.0),
    "official": dict(lr=1e-3),
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("settings", list(_SETTINGS))
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_and_cpu_give_the_same_locoprop_and_kfac_steps(name: str, settings: str) -> None:
    """Two LocoProp steps (and, where it applies, two K-FAC steps) from the same float64 weights and batch on
    the CPU and on CUDA end at the same weights."""
    case = CASES[name]
    results = []
    for device in ("cpu", "cuda"):
        model = case.build().to(device)
        x, y = (t.to(device) for t in case.batch())
        opt = _locoprop(case, model, **_SETTINGS[settings])  # type: ignore[arg-type]
        for _ in range(2):
            opt.step(lambda: case.loss(model(x), y))
        results.append([p.detach().cpu() for p in model.parameters()])
    for p, q in zip(*results, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_weighting_left_on_the_cpu_is_named_when_the_losses_are_on_cuda() -> None:
    model = nn.Linear(3, 1).double().cuda()
    weighting = GradNorm(["a", "b"], list(model.parameters()))
    out = model(torch.randn(4, 3, dtype=torch.float64, device="cuda"))
    with pytest.raises(ValueError, match=r"GradNorm is on cpu but the losses are on cuda:0.*weighting.to\('cuda:0'\)"):
        layerwise.backward({"a": out.mean(), "b": out.square().mean()}, weighting, params=list(model.parameters()))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet", "mobile", "transformer"])
def test_lower_precision_inner_products_track_the_full_precision_update(name: str) -> None:
    # float64 parameters, float32 inner products: the delta form keeps the error relative to the weight change
    case = CASES[name]
    updates = []
    for inner_dtype in (None, torch.float32):
        model = case.build()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = _locoprop(case, model, lr=1e-3, steps=5, inner_dtype=inner_dtype)
        opt.step(lambda model=model: _run(case, model))
        updates.append({n: p.detach() - before[n] for n, p in model.named_parameters()})
    exact, low = updates
    for n, d in exact.items():
        if float(d.norm()) > 0:
            assert float((low[n] - d).norm() / d.norm()) < 1e-4, n
