"""MuonAdam: Muon on the matrices and Adam on the rest behind one optimizer object."""

import copy as copy_module

import pytest
import torch
from torch import nn

from layerwise_bench import MuonAdam


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _loss(model):
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    return model(x).pow(2).mean()


def test_one_step_equals_muon_on_matrices_and_adam_on_the_rest():
    a, b = _model(), _model()
    opt = MuonAdam(a, 0.05, adam_lr=0.01)
    matrices = [p for p in b.parameters() if p.ndim == 2]
    others = [p for p in b.parameters() if p.ndim != 2]
    muon = torch.optim.Muon(matrices, lr=0.05, weight_decay=0.0)
    adam = torch.optim.AdamW(others, lr=0.01, weight_decay=0.0)
    for _ in range(3):
        opt.step(lambda: (opt.zero_grad(), _loss(a).backward()))  # type: ignore[func-returns-value]
        muon.zero_grad()
        adam.zero_grad()
        _loss(b).backward()
        muon.step()
        adam.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_scheduler_scales_both_groups_and_state_dict_round_trips():
    model = _model()
    opt = MuonAdam(model, 0.05, adam_lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
    for _ in range(2):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
        sched.step()
    assert opt.muon.param_groups[0]["lr"] == pytest.approx(0.05 / 4)
    assert opt.adam is not None and opt.adam.param_groups[0]["lr"] == pytest.approx(0.01 / 4)
    copy = _model()
    copy.load_state_dict(model.state_dict())
    other = MuonAdam(copy, 0.05, adam_lr=0.01)
    other.load_state_dict(copy_module.deepcopy(opt.state_dict()))  # as through torch.save
    for o in (opt, other):
        o.zero_grad()
    _loss(model).backward()
    _loss(copy).backward()
    opt.step()
    other.step()
    assert other.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for p, q in zip(model.parameters(), copy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_wrong_state_dict_and_no_matrix_are_clear_errors():
    opt = MuonAdam(_model(), 0.05)
    with pytest.raises(ValueError, match="expects the keys 'muon' and 'adam'"):
        opt.load_state_dict(torch.optim.Adam(_model().parameters()).state_dict())
    with pytest.raises(ValueError, match="no 2-D parameter"):
        MuonAdam(nn.Sequential(nn.LayerNorm(4)), 0.05)
