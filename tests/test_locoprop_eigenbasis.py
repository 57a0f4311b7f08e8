"""LocoProp's iterative solve in the eigenbasis of each layer's input covariance (``inner_basis="eigen"``),
against a float64 reference written out from autograd gradients, and its invariants on the zoo's models."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import LocoProp
from test_locoprop_outer import Net, _matrix, _rows
from zoo import CASES

GAMMA, LR, BETA, EPS = 3.0, 0.05, 0.6, 1e-3


def _set(m: nn.Module, mat: torch.Tensor) -> None:
    cols = m.weight[0].numel()
    m.weight.data.copy_(mat[:, :cols].reshape(m.weight.shape))
    if m.bias is not None:
        m.bias.data.copy_(mat[:, cols])


def _gradients(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Per layer ``(γ ∇_W L as [W | b], rows ŷ as [ŷ | 1])`` from autograd, on a copy of ``model``."""
    model = copy.deepcopy(model)
    inputs: dict[str, torch.Tensor] = {}
    for n in names:
        model.get_submodule(n).register_forward_hook(lambda mod, i, o, n=n: inputs.__setitem__(n, i[0].detach()))
    F.cross_entropy(model(x), y).backward()
    out = {}
    for n in names:
        m = model.get_submodule(n)
        g = m.weight.grad.reshape(m.weight.shape[0], -1)
        if m.bias is not None:
            g = torch.cat([g, m.bias.grad[:, None]], 1)
        out[n] = (GAMMA * g, _rows(m, inputs[n]))
    return out


def test_one_inner_adam_step_is_adam_in_the_averaged_input_eigenbasis() -> None:
    """Four steps on a residual CNN with BatchNorm and in-place ReLUs, basis refreshed every 2 steps: each layer's
    update is Adam run on ``G Q`` (first moment kept in the original coordinates, second moment in the basis) and
    mapped back by ``Qᵀ``, ``Q`` the eigenvectors of ``C ← βC + (1−β) Σŷŷᵀ/tr`` formed at steps 1 and 3."""
    torch.manual_seed(0)
    model = Net().double()
    opt = LocoProp(
        model,
        lr=LR,
        variant="s",
        steps=1,
        gamma=GAMMA,
        inner="adam",
        inner_options={"eps": EPS},
        inner_basis="eigen",
        refresh_every=2,
        basis_beta=BETA,
        other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
    )
    ref = copy.deepcopy(model)
    names = [n for n, _ in opt.layers]
    slots: dict[str, dict[str, torch.Tensor]] = {n: {} for n in names}
    for t in range(1, 5):
        x, y = torch.randn(6, 1, 5, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
        grads = _gradients(ref, names, x, y)
        ref(x)  # the same BatchNorm statistics update as the step's forward pass
        for n in names:
            g, rows = grads[n]
            s = slots[n]
            if t % 2 == 1:
                cov = rows.T @ rows
                cov = cov / cov.trace()
                s["C"] = cov if "C" not in s else BETA * s["C"] + (1 - BETA) * cov
                s["Q"] = torch.linalg.eigh(s["C"])[1]
            q = s["Q"]
            s["m"] = 0.9 * s.get("m", torch.zeros_like(g)) + 0.1 * g
            s["v"] = 0.999 * s.get("v", torch.zeros_like(g)) + 0.001 * (g @ q) ** 2
            step = (s["m"] @ q / (1 - 0.9**t)) / ((s["v"] / (1 - 0.999**t)).sqrt() + EPS)
            m = ref.get_submodule(n)
            _set(m, _matrix(m) - LR * step @ q.T)
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


def _vary(x: torch.Tensor, k: int) -> torch.Tensor:
    """Batch ``k`` of a run: images scaled, token sequences rolled (a new input covariance each time)."""
    return x * (1 + 0.1 * k) if x.is_floating_point() else x.roll(k, 1)


def _pair(case: str, **kw: Any) -> tuple[nn.Module, nn.Module, LocoProp, LocoProp]:
    c = CASES[case]
    a, b = c.build(), c.build()
    opts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small share of parameters warns on some zoo models
        for model, basis in ((a, "identity"), (b, "eigen")):
            opts.append(
                LocoProp(
                    model,
                    inner_basis=basis,
                    other_optimizer=lambda ps: torch.optim.SGD(ps, lr=1e-2),
                    **kw,
                )
            )
    return a, b, opts[0], opts[1]


@pytest.mark.parametrize("case", ["resnet", "mobile", "transformer"])
def test_inner_sgd_with_momentum_is_the_same_in_any_basis(case: str) -> None:
    """SGD with momentum commutes with an orthogonal change of coordinates, so three inner steps with the proximal
    term, on a basis that changes every batch (its momentum carried across), equal the plain solve: on a ResNet,
    a depthwise-separable CNN (grouped convs: one basis per group) and a transformer block."""
    c = CASES[case]
    kw = dict(lr=1e-3, steps=3, gamma=1.0, damping=0.5, inner="sgd", inner_options={"momentum": 0.9}, refresh_every=1)
    a, b, plain, eigen = _pair(case, **kw)
    x, y = c.batch()
    for k in range(3):
        xk = _vary(x, k)  # a new batch each step: a new basis
        plain.step(lambda xk=xk: c.loss(a(xk), y))
        eigen.step(lambda xk=xk: c.loss(b(xk), y))
    assert any(not torch.equal(p, q) for p, q in zip(b.parameters(), c.build().parameters(), strict=True))
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")


def test_resume_from_a_state_dict_equals_the_uninterrupted_run() -> None:
    c = CASES["transformer"]
    kw = dict(lr=1e-2, steps=1, gamma=1e2, inner="adam", refresh_every=3, inner_basis="eigen")
    x, y = c.batch()

    def build(model: nn.Module) -> LocoProp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LocoProp(model, other_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2), **kw)

    a = c.build()
    opt = build(a)
    for k in range(4):
        opt.step(lambda k=k: c.loss(a(_vary(x, k)), y))
    b = c.build()
    first = build(b)
    for k in range(2):
        first.step(lambda k=k: c.loss(b(_vary(x, k)), y))
    saved = copy.deepcopy(first.state_dict())
    model = copy.deepcopy(b)
    second = build(model)
    second.load_state_dict(saved)
    for k in range(2, 4):
        second.step(lambda k=k: c.loss(model(_vary(x, k)), y))
    for p, q in zip(a.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_reset_inner_state_keeps_the_basis() -> None:
    torch.manual_seed(0)
    model = Net().double()
    opt = LocoProp(
        model,
        lr=1e-2,
        steps=1,
        inner="adam",
        inner_basis="eigen",
        refresh_every=5,
        reset_inner_state=True,
        other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
    )
    x, y = torch.randn(6, 1, 5, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    opt.step(lambda: F.cross_entropy(model(x), y))
    w = model.stem.weight
    q = opt.state[w]["eigen_basis"]
    opt.step(lambda: F.cross_entropy(model(x * 2), y))
    assert opt.state[w]["eigen_basis"] is q and opt.state[w]["eigen_age"] == 2
    assert opt.state[w]["eigen_inner"]["adam_step"] == 1  # Adam's slots were cleared before the second step


@pytest.mark.parametrize(
    ("kw", "found"),
    [
        ({"inner_basis": "pca"}, "inner_basis"),
        ({"inner_basis": "eigen", "solver": "precond", "damping": 1.0}, "solver='precond'"),
        ({"inner_basis": "eigen", "inner_dtype": torch.bfloat16}, "inner_dtype=torch.bfloat16"),
        ({"inner_basis": "eigen", "basis_beta": 1.0}, "basis_beta"),
    ],
)
def test_misuse_is_refused_with_the_fix(kw: dict[str, Any], found: str) -> None:
    model = Net().double()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=found):
        LocoProp(model, other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0), **kw)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_a_layer_with_all_zero_inputs_steps_without_error() -> None:
    """A batch where a layer sees only zeros (dead ReLUs) has a zero covariance: the step goes on (its gradient is
    zero there), with a finite basis."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, bias=False)).double()
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(-1.0)
    opt = LocoProp(model, lr=1e-2, steps=1, inner="adam", inner_basis="eigen")
    x = torch.rand(5, 3, dtype=torch.float64)
    opt.step(lambda: F.cross_entropy(model(x), torch.zeros(5, dtype=torch.long)))
    q = opt.state[model[2].weight]["eigen_basis"]
    assert bool(torch.isfinite(q).all())
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
