"""The fast paths of LocoProp's layers as matrices against the slow obvious ones (float64): the input
covariance ``Σ ŷŷᵀ`` (whole batch, and from its first examples scaled), and the local gradient ``Σ δ ŷᵀ`` from the
layer's backward kernel, against the unfolded rows and against autograd."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import LocoProp
from layerwise.locoprop import LocalLayer, get_activation

CONVS = [
    {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "bias": False},
    {"in_channels": 4, "out_channels": 8, "kernel_size": (3, 2), "dilation": 2, "groups": 2},
    {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": "same", "groups": 4},
    {"in_channels": 4, "out_channels": 6, "kernel_size": 4, "padding": "same", "padding_mode": "reflect"},
]


def _rows(layer: LocalLayer, x: torch.Tensor) -> torch.Tensor:
    """Slow reference: input rows ``ŷ`` per group, ``(groups, rows, d)`` (conv: unfolded patches laid out as
    rows), with a ones column for the bias."""
    m = layer.module
    if isinstance(m, nn.Linear):
        rows = x.reshape(1, -1, x.shape[-1])
    else:
        assert isinstance(m, nn.Conv2d)
        padding = layer._conv_args()[1]
        cols = F.unfold(x, m.kernel_size, m.dilation, padding, m.stride)
        g = m.groups  # (B, C·k·k, L): group j owns the contiguous block of C/g channels
        rows = cols.view(cols.shape[0], g, -1, cols.shape[2]).permute(1, 0, 3, 2).reshape(g, -1, cols.shape[1] // g)
    if m.bias is not None:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], rows.shape[1], 1)], dim=2)
    return rows


def _delta_rows(layer: LocalLayer, delta: torch.Tensor) -> torch.Tensor:
    """Slow reference: ``δ`` per group, ``(groups, rows, outputs / groups)``, matching :func:`_rows`."""
    if isinstance(layer.module, nn.Linear):
        return delta.reshape(1, -1, delta.shape[-1])
    g = layer.groups
    d = delta.flatten(2)  # (B, O, L)
    return d.view(d.shape[0], g, -1, d.shape[2]).permute(1, 0, 3, 2).reshape(g, -1, d.shape[1] // g)


def _layers() -> list[tuple[LocalLayer, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for kw in CONVS:
        conv = nn.Conv2d(**kw).double()  # type: ignore[arg-type]
        layer = LocalLayer("conv", conv, get_activation("identity"))
        out.append((layer, layer.prepare(torch.randn(3, 4, 9, 8, generator=g, dtype=torch.float64))))
    for bias in (True, False):
        lin = nn.Linear(5, 3, bias=bias).double()
        out.append((LocalLayer("fc", lin, get_activation("identity")), torch.randn(3, 2, 5, generator=g).double()))
    return out


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", range(len(CONVS) + 2))
def test_gram_and_gradient_equal_the_unfolded_rows_and_autograd(case: int) -> None:
    layer, x = _layers()[case]
    rows = _rows(layer, x)
    torch.testing.assert_close(layer.gram(x), rows.mT @ rows, rtol=1e-12, atol=1e-10)
    first = _rows(layer, x[:2])  # covariance_examples=2 of a batch of 3: the first two, scaled by 3/2
    torch.testing.assert_close(layer.gram(x, 2), 1.5 * first.mT @ first, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(layer.gram(x, 3), layer.gram(x), rtol=0, atol=0)
    delta = torch.randn_like(layer.pre_activation(x))
    torch.testing.assert_close(layer.grad_matrix(x, delta), _delta_rows(layer, delta).mT @ rows, rtol=1e-12, atol=1e-10)
    # Σ δ ŷᵀ is the gradient of <δ, W ŷ + b> with respect to the parameters, laid out as layer.matrix().
    w = layer.weight.detach().clone().requires_grad_(True)
    b = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    (layer.apply(x, w, b) * delta).sum().backward()
    g = layer.groups
    expected = w.grad.reshape(g, w.shape[0] // g, -1)  # type: ignore[union-attr]
    if b is not None:
        expected = torch.cat([expected, b.grad.reshape(g, -1, 1)], dim=2)  # type: ignore[union-attr]
    torch.testing.assert_close(layer.grad_matrix(x, delta), expected, rtol=1e-12, atol=1e-10)


def test_precond_forms_the_covariance_only_when_the_inverse_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    opt = LocoProp(model, solver="precond", damping=1.0, steps=1, refresh_every=3)
    calls: list[str] = []
    original = LocalLayer.gram
    monkeypatch.setattr(LocalLayer, "gram", lambda self, x, n=None: calls.append(self.name) or original(self, x, n))
    x = torch.randn(4, 2, 6, 6)
    for _ in range(7):
        opt.step(lambda: model(x).square().mean())
    assert calls == ["0", "3"] * 3  # steps 1, 4 and 7 refresh both layers' inverses


def test_step_stats_of_one_inner_sgd_step_are_those_of_the_backprop_step() -> None:
    """One inner SGD step of size η is a backprop SGD step of size ηγ: cosine 1, norm ratio ηγ, decrease ηγ‖∇‖²."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(48, 2)).double()
    ref = copy.deepcopy(model)
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    eta, gamma = 0.05, 3.0
    opt = LocoProp(model, lr=eta, gamma=gamma, steps=1, inner="sgd", record_stats=True)
    assert opt.step_stats == []
    opt.step(lambda: model(x).square().mean())
    ref(x).square().mean().backward()
    for stats, module in zip(opt.step_stats, [ref[0], ref[3]], strict=True):
        grad = torch.cat([p.grad.reshape(-1) for p in module.parameters()])  # type: ignore[union-attr]
        assert stats.grad_norm == pytest.approx(float(grad.norm()), rel=1e-10)
        assert stats.cosine == pytest.approx(1.0, abs=1e-12)
        assert stats.norm_ratio == pytest.approx(eta * gamma, rel=1e-10)
        assert stats.decrease == pytest.approx(eta * gamma * float(grad.norm()) ** 2, rel=1e-10)
        assert stats.residual_ratio > 0.0  # an SGD step of this size may overshoot the local target
    assert [s.layer for s in opt.step_stats] == ["0", "3"]


def test_residual_ratio_is_what_is_left_of_the_local_target() -> None:
    """LocoProp-S, one closed-form step: ‖W_new ŷ + b − (â − γg)‖ / ‖γg‖, recomputed by hand."""
    torch.manual_seed(1)
    fc = nn.Linear(4, 3).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    a = fc(x)
    g = torch.autograd.grad(a.square().mean(), a)[0]
    target = (a - 10.0 * g).detach()
    opt = LocoProp(fc, solver="exact", variant="s", gamma=10.0, damping=0.1, record_stats=True)
    opt.step(lambda: fc(x).square().mean())
    with torch.no_grad():
        expected = float((fc(x) - target).norm() / (10.0 * g).norm())
    assert opt.step_stats[0].residual_ratio == pytest.approx(expected, rel=1e-10)
    assert opt.step_stats[0].residual_ratio < 0.5


def test_the_step_phases_are_marked_for_the_profiler() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 2))
    opt = LocoProp(model, solver="precond", damping=1.0, other_optimizer=lambda ps: torch.optim.SGD(ps, 0.1))
    x = torch.randn(6, 4)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step(lambda: model(x).square().mean())
    names = {e.key for e in prof.key_averages()}
    phases = ["forward", "backward", "other_optimizer", "solve", "covariance", "layer.0", "layer.3"]
    assert {f"LocoProp.{p}" for p in phases} <= names


@pytest.mark.parametrize("solver", ["precond", "exact"])
def test_a_covariance_that_overflows_fails_the_step_with_nothing_changed(solver: str) -> None:
    """Inputs of 1e20 keep the loss finite (tanh saturates) but overflow the float32 covariance: the error
    names the layer and the cause, and parameters, BatchNorm buffers and optimizer state are as before."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.BatchNorm1d(8), nn.Linear(8, 2))
    variant = "s" if solver == "exact" else "m"
    opt = LocoProp(
        net, solver=solver, variant=variant, lr=1.0, steps=1, damping=1.0, refresh_every=5,
        other_optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-2),
    )  # fmt: skip
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt.step(lambda: F.cross_entropy(net(x), y))  # a good step: the inverses are cached
    state = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    with pytest.raises(FloatingPointError, match=r"layer '0'.*input covariance is not finite.*diverged"):
        for _ in range(5):  # the cached inverse is reused until it is due: the refresh fails
            opt.step(lambda: F.cross_entropy(net(x * 1e20), y))
            state = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    for k, v in state[0].items():
        assert torch.equal(net.state_dict()[k], v), k
    after = opt.state_dict()
    assert str(after["state"]) == str(state[1]["state"])


def test_a_covariance_too_large_for_its_damping_names_the_cause_with_nothing_changed() -> None:
    """Identical inputs of 1e12 keep the loss and the float32 covariance finite, but the damping is lost in
    rounding and Cholesky fails: the error says so (not only 'raise damping'); parameters and state unchanged."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = LocoProp(net, solver="precond", lr=1.0, steps=1, damping=1.0)
    x, y = torch.ones(16, 4) * 1e12, torch.randint(0, 2, (16,))
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(FloatingPointError, match=r"layer '0'.*largest diagonal entry 1\.6e\+25.*lost in rounding"):
        opt.step(lambda: F.cross_entropy(net(x), y))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items()) and not opt.state
