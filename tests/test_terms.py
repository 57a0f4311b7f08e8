"""The per-term gradient engine (layerwise.terms): validation once per step with one host sync, and one
implementation of per-term gradients and set Gramians behind every entry point."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import layerwise
from layerwise.terms import (
    CheckedLosses,
    NonFiniteLoss,
    TermGradients,
    check_losses,
    set_gramians,
    term_gradients,
)
from layerwise.weighting import Fixed


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts host synchronisations: a tensor read as a Python float, bool or item."""
    count = {"n": 0}
    for name in ("__float__", "__bool__", "item"):
        original = getattr(Tensor, name)

        def counted(self: Tensor, *a: object, _original=original) -> object:  # type: ignore[no-untyped-def]
            count["n"] += 1
            return _original(self, *a)

        monkeypatch.setattr(Tensor, name, counted)
    return count


def _terms() -> tuple[nn.Linear, dict[str, Tensor]]:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    out = model(torch.randn(6, 4))
    return model, {"a": out.mean(), "b": out.square().mean(), "c": out.abs().mean(), "d": out[:, 0].sum()}


def test_checking_k_terms_costs_one_host_sync_and_checked_terms_pass_for_free(syncs: dict[str, int]) -> None:
    _, losses = _terms()
    checked = check_losses(losses)
    assert syncs["n"] == 1
    assert isinstance(checked, CheckedLosses)
    assert check_losses(checked) is checked
    assert syncs["n"] == 1


def test_backward_with_a_weighting_validates_the_terms_once(syncs: dict[str, int]) -> None:
    """backward, the weighting's check and its weights: one sync to validate the K terms, one to record
    the step's weights in the weighting's history (not K of each)."""
    model, losses = _terms()
    weighting = Fixed({"a": 1.0, "b": 0.5, "c": 2.0, "d": 0.1}, warn_useless=False)
    layerwise.backward(losses, weighting, params=list(model.parameters()))
    assert syncs["n"] <= 2


def test_a_non_finite_term_is_named() -> None:
    _, losses = _terms()
    losses["c"] = losses["c"] * float("inf")
    with pytest.raises(NonFiniteLoss, match=r"loss term 'c': its value is inf"):
        check_losses(losses)


def test_every_entry_point_is_the_same_computation() -> None:
    model, losses = _terms()
    params = list(model.parameters())
    engine = TermGradients(losses, params, retain_graph=True)
    plain = term_gradients(losses, params, retain_graph=True)
    for t in losses:
        autograd = torch.autograd.grad(losses[t], params, retain_graph=True)
        for g, h, a in zip(engine.rows([0, 1])[t], plain[t], autograd, strict=True):
            torch.testing.assert_close(g, a)
            torch.testing.assert_close(h, a)
    sets = {"all": [0, 1], "weight": [0]}
    rows = [plain[t] for t in losses]
    from_engine = engine.gramians(sets)
    from_rows = set_gramians(rows, sets)
    j = torch.stack([torch.cat([g.flatten() for g in r]) for r in rows]).double()
    torch.testing.assert_close(from_rows["all"], j @ j.T)
    for name in sets:
        torch.testing.assert_close(from_engine[name], from_rows[name])
