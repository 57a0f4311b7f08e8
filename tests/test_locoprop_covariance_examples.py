"""``covariance_examples``: a refresh forms each layer's input covariance from the batch's first n examples,
scaled by batch/n. Against a float64 reference from autograd and the unfolded rows, on a residual CNN with
BatchNorm and in-place ReLUs; misuse refused with the model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import LocoProp
from test_locoprop_outer import GAMMA, LAM, LR, Net, _directions, _matrix, _rows

BATCH, FIRST = 8, 3


def _reference_step(model: Net, x: torch.Tensor, y: torch.Tensor) -> None:
    """``W ← W − lr·γ ∇_W L (λI + (B/n) Σ_{first n} ŷŷᵀ)⁻¹`` per layer, in place (LocoProp-S's one-step solve)."""
    directions = _directions(model, x, y, first=FIRST)
    model(x)  # the step's forward pass updates BatchNorm's statistics
    for n, d in directions.items():
        m = model.get_submodule(n)
        new = _matrix(m) - LR * d
        cols = m.weight[0].numel()
        m.weight.data.copy_(new[:, :cols].reshape(m.weight.shape))
        if m.bias is not None:
            m.bias.data.copy_(new[:, cols])


def _locoprop(model: nn.Module, **kw: object) -> LocoProp:
    return LocoProp(
        model,
        lr=LR,
        variant="s",
        solver="precond",
        steps=1,
        gamma=GAMMA,
        damping=LAM,
        other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
        **kw,  # type: ignore[arg-type]
    )


def test_the_preconditioned_step_uses_the_first_examples_scaled() -> None:
    torch.manual_seed(0)
    model = Net().double()
    ref = copy.deepcopy(model)
    opt = _locoprop(model, covariance_examples=FIRST)
    for _ in range(2):  # refresh_every=1: each step forms its covariance anew
        x, y = torch.randn(BATCH, 1, 5, 5, dtype=torch.float64), torch.randint(0, 3, (BATCH,))
        _reference_step(ref, x, y)
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11, msg=lambda m, name=name: f"{name}: {m}")


def test_the_subsampled_step_differs_from_the_whole_batch_and_equals_it_when_n_covers_the_batch() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(BATCH, 1, 5, 5, dtype=torch.float64), torch.randint(0, 3, (BATCH,))
    models = [Net().double() for _ in range(3)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    for m, n in zip(models, (None, BATCH, FIRST), strict=True):
        _locoprop(m, covariance_examples=n).step(lambda m=m: F.cross_entropy(m(x), y))
    whole, covering, first = (list(m.parameters()) for m in models)
    assert all(torch.equal(p, q) for p, q in zip(whole, covering, strict=True))
    assert not all(torch.allclose(p, q) for p, q in zip(whole, first, strict=True))


def test_the_eigenbasis_is_formed_from_the_first_examples() -> None:
    torch.manual_seed(2)
    model = Net().double()
    x, y = torch.randn(BATCH, 1, 5, 5, dtype=torch.float64), torch.randint(0, 3, (BATCH,))
    inputs: dict[nn.Module, torch.Tensor] = {}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for m in convs:
        m.register_forward_hook(lambda mod, i, o: inputs.__setitem__(mod, i[0].detach().clone()))
    opt = LocoProp(
        model,
        lr=1e-3,
        solver="iterative",
        inner="adam",
        steps=1,
        gamma=GAMMA,
        inner_basis="eigen",
        basis_beta=0.0,
        covariance_examples=FIRST,
        other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
    )
    opt.step(lambda: F.cross_entropy(model(x), y))
    for m in convs:
        rows = _rows(m, inputs[m][:FIRST])
        gram = rows.T @ rows
        torch.testing.assert_close(opt.state[m.weight]["eigen_gram"][0], gram / gram.trace(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("kw", "found"),
    [
        ({"covariance_examples": 0, "solver": "precond", "steps": 1, "damping": 1.0}, "covariance_examples=0"),
        ({"covariance_examples": 2.5, "solver": "precond", "steps": 1, "damping": 1.0}, "covariance_examples=2.5"),
        ({"covariance_examples": True, "solver": "precond", "steps": 1, "damping": 1.0}, "covariance_examples=True"),
        ({"covariance_examples": 16}, "forms none"),
    ],
)
def test_misuse_is_refused_with_the_model_untouched(kw: dict, found: str) -> None:  # type: ignore[type-arg]
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=found):
        LocoProp(model, other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0), **kw)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
