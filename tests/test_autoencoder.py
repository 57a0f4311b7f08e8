import math

import pytest
import torch
from torch import nn

from layerwise.models import deep_autoencoder, glorot_uniform_, sigmoid_cross_entropy


def test_official_shapes_and_activations():
    model = deep_autoencoder()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 1000),
        (1000, 500),
        (500, 250),
        (250, 30),
        (30, 250),
        (250, 500),
        (500, 1000),
        (1000, 784),
    ]
    kinds = [type(m).__name__ for m in model]
    # tanh after every hidden layer except the linear 30-unit code layer; logits out
    assert kinds == [
        "Linear",
        "Tanh",
        "Linear",
        "Tanh",
        "Linear",
        "Tanh",
        "Linear",
        "Linear",
        "Tanh",
        "Linear",
        "Tanh",
        "Linear",
        "Tanh",
        "Linear",
    ]
    assert sum(isinstance(m, nn.ReLU) for m in deep_autoencoder(activation="relu")) == 6


def test_glorot_uniform_weights_and_biases():
    layer = glorot_uniform_(nn.Linear(1000, 500), torch.Generator().manual_seed(0))
    w_bound, b_bound = math.sqrt(6 / 1500), math.sqrt(3 / 500)
    assert layer.weight.abs().max() <= w_bound and layer.weight.abs().max() > 0.99 * w_bound
    assert layer.bias.abs().max() <= b_bound and layer.bias.abs().max() > 0.95 * b_bound
    # uniform: variance bound^2 / 3
    assert layer.weight.var().item() == pytest.approx(w_bound**2 / 3, rel=0.02)


def test_seeded_init_is_reproducible():
    a = deep_autoencoder(generator=torch.Generator().manual_seed(3))
    b = deep_autoencoder(generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_loss_value_on_known_input():
    logits = torch.zeros(4, 784)
    target = torch.rand(4, 784)
    # softplus(0) - t*0 = log 2 per pixel, summed over 784 pixels, mean over the batch
    assert sigmoid_cross_entropy(logits, target).item() == pytest.approx(784 * math.log(2), rel=1e-6)
    s = torch.tensor([[2.0, -1.0]])
    t = torch.tensor([[1.0, 0.25]])
    expected = (math.log1p(math.exp(2.0)) - 2.0) + (math.log1p(math.exp(-1.0)) + 0.25)
    assert sigmoid_cross_entropy(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Invalid activation='gelu'"):
        deep_autoencoder(activation="gelu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))
