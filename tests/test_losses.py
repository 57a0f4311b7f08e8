"""Local losses against their formulas written out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layerwise.losses import Consistency, LocalClassifier, MSETarget, Sparsity


def test_consistency_is_mean_one_minus_cosine_of_consecutive_states() -> None:
    h = torch.randn(3, 5, 4, dtype=torch.float64)
    expected = torch.stack([1 - F.cosine_similarity(h[:, t], h[:, t + 1], dim=-1) for t in range(4)]).mean()
    torch.testing.assert_close(Consistency()(h), expected)
    torch.testing.assert_close(Consistency(dim=0)(h.transpose(0, 1)), expected)
    same = torch.randn(2, 1, 4).expand(2, 6, 4)
    assert Consistency()(same).abs() < 1e-6
    with pytest.raises(ValueError, match="at least two states"):
        Consistency()(torch.randn(2, 1, 4))


def test_sparsity_and_mse_target() -> None:
    h = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(Sparsity()(h), h.abs().sum() / h.numel())
    t = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(MSETarget(t)(h), ((h - t) ** 2).mean())
    torch.testing.assert_close(MSETarget(lambda: t)(h), ((h - t) ** 2).mean())
    torch.testing.assert_close(MSETarget()(h, t), ((h - t) ** 2).mean())
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4, 4\).*target has shape \(2, 3\)"):
        MSETarget(torch.zeros(2, 3))(h)
    with pytest.raises(ValueError, match="no target"):
        MSETarget()(h)


def test_mse_target_detaches_a_teacher() -> None:
    teacher = torch.randn(4, 3, requires_grad=True)
    h = torch.randn(4, 3, requires_grad=True)
    MSETarget(lambda: teacher * 2)(h).backward()
    assert teacher.grad is None and h.grad is not None


def test_local_classifier_is_a_linear_probe_with_cross_entropy() -> None:
    head = LocalClassifier(8, 3, pool="avg")
    h = torch.randn(5, 8, 4, 4)
    y = torch.randint(0, 3, (5,))
    expected = F.cross_entropy(head.linear(h.mean(dim=(2, 3))), y)
    torch.testing.assert_close(head(h, y), expected)
    with pytest.raises(ValueError, match="expects 8 features.*found 128.*in_features=128"):
        LocalClassifier(8, 3)(h, y)
