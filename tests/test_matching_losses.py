"""Property-based checks (hypothesis) of the matching losses: Bregman divergences of the activations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from layerwise.locoprop import Activation, activation_names, get_activation, matching_loss, register_activation
from layerwise.locoprop._recognise import activation_for_module

_vectors = st.lists(st.floats(-6, 6, allow_nan=False), min_size=2, max_size=6)
STRICT = ["identity", "sigmoid", "tanh"]  # strictly convex integral: zero only at z = a


def _pair(zs: list[float], as_: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(len(zs), len(as_))
    return torch.tensor(zs[:n], dtype=torch.float64), torch.tensor(as_[:n], dtype=torch.float64)


@pytest.mark.parametrize("name", ["identity", "sigmoid", "tanh", "relu", "softmax"])
@settings(max_examples=80, deadline=None)
@given(zs=_vectors, as_=_vectors)
def test_matching_loss_is_nonnegative_and_its_gradient_is_f_z_minus_y(
    name: str, zs: list[float], as_: list[float]
) -> None:
    z, a = _pair(zs, as_)
    act = get_activation(name)
    z.requires_grad_(True)
    loss = matching_loss(name, z, a)
    assert float(loss.detach()) >= -1e-9
    (grad,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(grad, act.fn(z.detach()) - act.fn(a), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", STRICT)
@settings(max_examples=80, deadline=None)
@given(zs=_vectors, as_=_vectors)
def test_matching_loss_is_zero_exactly_when_equal(name: str, zs: list[float], as_: list[float]) -> None:
    z, a = _pair(zs, as_)
    assert abs(float(matching_loss(name, a, a))) < 1e-12
    if (z - a).abs().max() > 1e-3:
        assert float(matching_loss(name, z, a)) > 0


@settings(max_examples=50, deadline=None)
@given(zs=_vectors, shift=st.floats(-3, 3))
def test_softmax_matching_loss_is_zero_for_equal_distributions(zs: list[float], shift: float) -> None:
    z = torch.tensor(zs, dtype=torch.float64)
    assert abs(float(matching_loss("softmax", z + shift, z))) < 1e-9


def test_sigmoid_matching_loss_is_the_bernoulli_kl() -> None:
    z, a = torch.tensor([0.3, -1.2], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    y, p = torch.sigmoid(a), torch.sigmoid(z)
    kl = (y * torch.log(y / p) + (1 - y) * torch.log((1 - y) / (1 - p))).sum()
    torch.testing.assert_close(matching_loss("sigmoid", z, a), kl)


def test_user_activation_registers_and_is_found_after_a_layer() -> None:
    class Softsign(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.softsign(x)

    act = Activation("softsign-test", nn.functional.softsign, modules=(Softsign,))
    register_activation(act)
    assert "softsign-test" in activation_names()
    assert activation_for_module(Softsign(), "fc") is act
    with pytest.raises(ValueError, match="already registered"):
        register_activation(act)
    with pytest.raises(ValueError, match="no integral"):
        matching_loss("softsign-test", torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="Unknown activation 'nope'"):
        get_activation("nope")
