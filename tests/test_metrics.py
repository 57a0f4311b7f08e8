"""Similarity metrics against their definitions and invariances."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerwise.metrics import linear_cka, parameter_distance


def hsic_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """The definition: HSIC with linear kernels and the centring matrix H, normalised."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    return float(hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_)))


def test_linear_cka_equals_the_hsic_definition_and_its_invariances() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(8, 5, generator=g, dtype=torch.float64))
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, rel=1e-10)
    assert linear_cka(x, x[torch.randperm(50, generator=g)]) < 0.5
    with pytest.raises(ValueError, match="x has 50 rows, y has 49"):
        linear_cka(x, y[:49])


def test_parameter_distance() -> None:
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    d = parameter_distance(a, b)
    with torch.no_grad():
        diff = torch.cat([(a.weight - b.weight).flatten(), a.bias - b.bias]).norm()
    assert d["total"] == pytest.approx((diff / torch.cat([b.weight.flatten(), b.bias]).norm()).item(), rel=1e-6)
    assert parameter_distance(b, b)["total"] == 0.0
    with pytest.raises(ValueError, match="same architecture"):
        parameter_distance(a, nn.Linear(3, 3))
