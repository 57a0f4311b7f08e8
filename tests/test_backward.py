"""``layerwise.backward``: what it does beyond ``loss.backward()`` for a dict of terms, and its misuse."""

import warnings

import pytest
import torch
from torch import nn

import layerwise


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def test_a_parameter_left_out_of_params_is_warned_once_and_gets_no_gradient():
    net = _net()
    head = nn.Linear(3, 2)
    x = torch.randn(5, 4)

    def losses():
        h = net[1](net[0](x))
        return {"main": net[2](h).pow(2).mean(), "aux": head(h).pow(2).mean()}

    with pytest.warns(UserWarning, match=r"2 trainable tensor\(s\) that are not in params=.*\(2, 3\), \(2,\)"):
        layerwise.backward(losses(), params=list(net.parameters()))
    assert head.weight.grad is None  # as warned
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per params= set: the second step is silent
        layerwise.backward(losses(), params=list(net.parameters()))
        layerwise.backward(losses(), params=[*net.parameters(), *head.parameters()])  # complete: silent


def test_a_weighting_s_own_parameters_do_not_count_as_left_out():
    net = _net()
    x = torch.randn(5, 4)
    weighting = layerwise.Uncertainty(["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = net(x)
        layerwise.backward(
            {"a": out[:, 0].pow(2).mean(), "b": out[:, 1].pow(2).mean()}, weighting, params=list(net.parameters())
        )
    assert all(p.grad is not None for p in weighting.parameters())
