"""LocoProp's outer momentum and orthogonalised step (Newton-Muon's update) on a residual CNN with BatchNorm
and in-place ReLUs, against a float64 reference built from autograd's gradients, the unfolded input rows and
a plain Newton–Schulz polynomial."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import LocoProp
from layerwise.optim import NS_COEFFICIENTS, newton_schulz

GAMMA, LAM, LR, BETA = 3.0, 0.5, 0.05, 0.9


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + x, inplace=True)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.block, self.head = Block(4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(F.relu(self.bn(self.stem(x)), inplace=True)).mean((2, 3)))


def _ns_reference(m: torch.Tensor) -> torch.Tensor:
    """The quintic iteration written out: X ← aX + b(XXᵀ)X + c(XXᵀ)²X from X = M/‖M‖_F (wide orientation)."""
    a, b, c = NS_COEFFICIENTS
    x = m.T if m.shape[0] > m.shape[1] else m
    x = x / x.norm()
    for _ in range(5):
        s = x @ x.T
        x = a * x + b * s @ x + c * s @ s @ x
    return x.T if m.shape[0] > m.shape[1] else x


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        rows = x.reshape(-1, x.shape[-1])
    else:
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        rows = cols.permute(0, 2, 1).reshape(-1, cols.shape[1])
    return torch.cat([rows, rows.new_ones(len(rows), 1)], 1) if module.bias is not None else rows


def _directions(model: Net, x: torch.Tensor, y: torch.Tensor, first: int | None = None) -> dict[str, torch.Tensor]:
    """Per layer ``d = γ ∇_W L (λI + Σ ŷŷᵀ)⁻¹``, weights and bias laid out as one matrix, from autograd
    (``first``: ``Σ`` from the batch's first examples only, scaled by batch/first)."""
    model = copy.deepcopy(model)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    inputs: dict[str, torch.Tensor] = {}
    for n, m in layers.items():
        m.register_forward_hook(lambda mod, i, o, n=n: inputs.__setitem__(n, i[0].detach().clone()))
    F.cross_entropy(model(x), y).backward()
    out = {}
    for n, m in layers.items():
        g = m.weight.grad.reshape(m.weight.shape[0], -1)
        if m.bias is not None:
            g = torch.cat([g, m.bias.grad[:, None]], 1)
        rows = _rows(m, inputs[n][:first])
        scale = 1.0 if first is None else len(x) / first
        cov = scale * rows.T @ rows + LAM * torch.eye(rows.shape[1], dtype=rows.dtype)
        out[n] = GAMMA * g @ torch.linalg.inv(cov)
    return out


def _matrix(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach().reshape(m.weight.shape[0], -1)
    return torch.cat([w, m.bias.detach()[:, None]], 1) if m.bias is not None else w.clone()


@pytest.mark.parametrize("orthogonalize", [False, True])
def test_two_steps_equal_the_momentum_and_newton_schulz_of_the_preconditioned_gradient(orthogonalize: bool) -> None:
    torch.manual_seed(0)
    model = Net().double()
    opt = LocoProp(
        model,
        lr=LR,
        variant="s",
        solver="precond",
        steps=1,
        gamma=GAMMA,
        damping=LAM,
        momentum=BETA,
        orthogonalize=orthogonalize,
        other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
    )
    ref = copy.deepcopy(model)
    names = [n for n, _ in opt.layers]
    buf = {n: torch.zeros(()) for n in names}
    for _ in range(2):
        x, y = torch.randn(6, 1, 5, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
        d = _directions(ref, x, y)
        ref(x)  # the same BatchNorm statistics update as the step's forward pass
        for n in names:
            buf[n] = BETA * buf[n] + (1 - BETA) * d[n]
            u = (1 - BETA) * d[n] + BETA * buf[n]
            if orthogonalize:
                u = math.sqrt(max(1.0, u.shape[0] / u.shape[1])) * _ns_reference(u)
            m = ref.get_submodule(n)
            new = _matrix(m) - LR * u
            cols = m.weight[0].numel()
            m.weight.data.copy_(new[:, :cols].reshape(m.weight.shape))
            if m.bias is not None:
                m.bias.data.copy_(new[:, cols])
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11, msg=lambda m, name=name: f"{name}: {m}")


def test_newton_schulz_is_near_the_polar_factor_for_each_matrix_of_a_batch() -> None:
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(3, 8, 20, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1e-3, 50.0]).reshape(3, 1, 1)
    out = newton_schulz(batch, dtype=torch.float64)
    for m, o in zip(batch, out, strict=True):
        torch.testing.assert_close(o, _ns_reference(m), rtol=1e-10, atol=1e-12)  # each normalised on its own
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        s = torch.linalg.svdvals(o)
        assert 0.6 < float(s.min()) and float(s.max()) < 1.25, s
        cos = float((o * (u @ vh)).sum() / (o.norm() * (u @ vh).norm()))
        assert cos > 0.98, cos


def test_momentum_survives_a_state_dict_round_trip() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 5, 5), torch.randint(0, 3, (8,))
    model = Net()
    kw = {"lr": 0.02, "solver": "precond", "steps": 1, "damping": 1.0, "momentum": 0.95, "orthogonalize": True}

    def make(m: Net) -> LocoProp:
        return LocoProp(m, other_optimizer=lambda ps: torch.optim.AdamW(ps, 1e-3), **kw)  # type: ignore[arg-type]

    opt = make(model)
    opt.step(lambda: F.cross_entropy(model(x), y))
    twin = copy.deepcopy(model)
    resumed = make(twin)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((model, opt), (twin, resumed)):
        o.step(lambda m=m: F.cross_entropy(m(x), y))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kw", "found"),
    [
        ({"momentum": 0.9}, "solver='iterative'"),
        ({"orthogonalize": True, "solver": "precond", "steps": 3, "damping": 1.0}, "steps=3"),
        ({"momentum": 1.0, "solver": "precond", "steps": 1, "damping": 1.0}, "momentum=1.0"),
        ({"orthogonalize": 1, "solver": "precond", "steps": 1, "damping": 1.0}, "orthogonalize=1"),
    ],
)
def test_momentum_and_orthogonalize_outside_a_one_step_solve_are_refused(kw: dict, found: str) -> None:  # type: ignore[type-arg]
    model = nn.Sequential(nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=found):
        LocoProp(model, **kw)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("variant", ["s", "m"])
def test_one_inner_adam_step_is_adam_on_the_gradient(variant: str) -> None:
    """A one-step iterative solve starts at the local problem's origin, where the residual is γg for S and M alike:
    its local gradient is γ·∇_W L, and one inner Adam step with kept state is Adam on the gradient (with its ε
    divided by γ). So LocoProp(steps=1, inner="adam") is Adam, on a transformer block with attention and
    LayerNorm as on anything: what the transformer recipe measured (per-step losses equal to AdamW's in
    benchmarks/locoprop-diagnosis-lm-bytes-cpu)."""
    from zoo import CASES

    case = CASES["transformer"]
    a, b = case.build(), case.build()
    x, y = case.batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small share of parameters warns
        loco = LocoProp(
            a,
            lr=1e-2,
            variant=variant,
            solver="iterative",
            steps=1,
            inner="adam",
            gamma=1e4,
            inner_options={"eps": 1e-8 * 1e4},  # Adam's ε on the gradient, times γ (one process: batch scale 1)
            other_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-8),
        )
    adam = torch.optim.Adam(b.parameters(), lr=1e-2, eps=1e-8)
    for _ in range(3):
        loco.step(lambda: case.loss(a(x), y))
        adam.zero_grad()
        case.loss(b(x), y).backward()
        adam.step()
    moved = [not torch.equal(p, q) for p, q in zip(b.parameters(), case.build().parameters(), strict=True)]
    assert all(moved)
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")
