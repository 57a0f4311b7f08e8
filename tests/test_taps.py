"""Taps: forward hooks that keep named submodules' outputs, release them, and reject unknown names."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from layerwise.taps import Taps


def test_taps_keep_outputs_of_named_modules() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with Taps(model, ["0", "1"]) as taps:
        model(x)
        torch.testing.assert_close(taps["0"], model[0](x))
        torch.testing.assert_close(taps["1"], torch.tanh(model[0](x)))
        assert taps["1"].requires_grad  # gradients flow back through a tapped activation
    assert not model[0]._forward_hooks and not model._forward_pre_hooks


def test_rnn_tap_holds_every_time_step_and_cell_taps_collect_each_call() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 4, batch_first=True)
            self.cell = nn.GRUCell(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.gru(x)
            h = torch.zeros(x.shape[0], 4)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return out[:, -1] + h

    net = Net()
    x = torch.randn(2, 6, 3)
    taps_all = Taps(net, ["cell"], keep="all")
    taps = Taps(net, {"states": "gru"})
    net(x)
    assert taps["states"].shape == (2, 6, 4)
    torch.testing.assert_close(taps["states"], net.gru(x)[0])
    assert len(taps_all["cell"]) == 6 and taps_all.stacked("cell").shape == (2, 6, 4)
    net(x)
    assert len(taps_all["cell"]) == 6  # released at the start of each forward: nothing accumulates


def test_no_memory_kept_after_clear_or_remove() -> None:
    model = nn.Sequential(nn.Linear(3, 4))
    taps = Taps(model, ["0"])
    model(torch.randn(2, 3))
    ref = weakref.ref(taps["0"])
    taps.clear()
    gc.collect()
    assert ref() is None
    with pytest.raises(KeyError, match="run a forward pass"):
        taps["0"]
    taps.remove()
    model(torch.randn(2, 3))
    assert "0" not in taps


def test_ref_reads_a_teacher_tap_at_call_time() -> None:
    teacher = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    taps = Taps(teacher, ["1"], detach=True)
    ref = taps.ref("1")
    x = torch.randn(2, 3)
    teacher(x)
    torch.testing.assert_close(ref(), torch.relu(teacher[0](x)))
    assert not ref().requires_grad


def test_unknown_names_list_the_valid_ones() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match=r"Unknown module name\(s\) \['fc1'\].*'0', '1', '1.0', '1.1'"):
        Taps(model, ["fc1"])
    with pytest.raises(TypeError, match=r"one string.*\['0'\]"):
        Taps(model, "0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep='every'"):
        Taps(model, ["0"], keep="every")  # type: ignore[arg-type]
