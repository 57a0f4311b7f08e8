"""LayerSkip's early-exit weights against the paper's formula written out by hand, its curricula, resume, misuse."""

from __future__ import annotations

import warnings

import pytest
import torch

import layerwise
from layerwise.weighting import LayerSkip

TERMS = ["exit1", "exit2", "exit3", "main"]


def _step(w: LayerSkip) -> list[float]:
    return w.weights_for({t: torch.tensor(1.0 + i) for i, t in enumerate(TERMS)}).tolist()


def test_scales_grow_with_depth_and_sum_to_one_without_curriculum():
    w = LayerSkip(TERMS, steps=10, e_scale=0.5, curriculum="none")
    # e(l) = e_scale * (1 + ... + (l+1)) for the exits, L + e_scale * (1 + ... + (L-1)) for the output
    raw = [0.5 * 1, 0.5 * 3, 0.5 * 6, 4 + 0.5 * 6]
    assert _step(w) == pytest.approx([r / sum(raw) for r in raw])
    assert LayerSkip(TERMS, steps=10, curriculum="none").scales()["main"] == 1 + 2 + 3 + 4  # e_scale 1: Σ_{i=1}^{L} i


def test_the_output_term_can_come_first_in_the_dict():
    terms = ["main", "exit1", "exit2", "exit3"]  # the order deep-supervision code often uses
    w = LayerSkip(terms, steps=8, output="main")
    assert w.enabled(0) == ["main"] and w.enabled(2) == ["exit3", "main"]
    first = w.weights_for({t: torch.tensor(1.0) for t in terms}).tolist()
    assert first == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="output='out'"):
        LayerSkip(terms, steps=8, output="out")


def test_dropping_the_output_when_no_exit_is_on_is_refused():
    w = LayerSkip(TERMS, steps=8)
    w.drop("main")
    with pytest.raises(ValueError, match="nothing would be trained"):
        w.weights_for({t: torch.tensor(1.0) for t in TERMS[:-1]})


def test_gradual_curriculum_switches_exits_on_deepest_first_by_half_of_training():
    w = LayerSkip(TERMS, steps=8, curriculum="gradual")
    on = [w.enabled(t) for t in range(9)]
    # exit l is on once 2t/8 >= (4 - l)/4, i.e. t >= 4 - l; the output always
    assert on[0] == on[1] == ["main"]
    assert on[2] == ["exit3", "main"] and on[3] == ["exit2", "exit3", "main"]
    assert on[4] == on[8] == TERMS
    weights = [_step(w) for _ in range(4)]
    assert weights[0] == [0, 0, 0, 1] and weights[2] == pytest.approx([0, 0, 6 / 16, 10 / 16])


def test_rotational_curriculum_cycles_through_the_exits():
    w = LayerSkip(TERMS, steps=100, curriculum="rotational", rotation=2)
    assert w.enabled(0) == ["exit1", "exit3", "main"] and w.enabled(1) == ["exit2", "main"]
    assert w.enabled(2) == w.enabled(0)
    assert _step(w) == pytest.approx([1 / 17, 0, 6 / 17, 10 / 17])
    assert _step(w) == pytest.approx([0, 3 / 13, 0, 10 / 13])


def test_backward_gives_the_weighted_gradient_and_no_useless_warning():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3))
    w = LayerSkip(TERMS, steps=4, curriculum="gradual", window=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the curriculum's zero weights are not "useless" terms
        for _ in range(4):
            losses = {t: (i + 1) * (p**2).sum() for i, t in enumerate(TERMS)}
            p.grad = None
            layerwise.backward(losses, w, params=[p])
            weights = w.history[-1]
            expected = sum(weights[t] * (i + 1) for i, t in enumerate(TERMS)) * 2 * p.detach()
            torch.testing.assert_close(p.grad, expected)
    assert w.useless_terms() == [] and w.history[0]["exit1"] == 0 and w.history[-1]["exit1"] > 0


def test_resume_from_state_dict_continues_the_curriculum():
    a = LayerSkip(TERMS, steps=6)
    [_step(a) for _ in range(3)]
    b = LayerSkip(TERMS, steps=6)
    b.load_state_dict(a.state_dict())
    assert [_step(b) for _ in range(3)] == [_step(a) for _ in range(3)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps=0"),
        ({"steps": 5, "e_scale": 0.0}, "e_scale=0.0"),
        ({"steps": 5, "e_scale": float("inf")}, "e_scale=inf"),
        ({"steps": 5, "curriculum": "linear"}, "curriculum='linear'"),
        ({"steps": 5, "curriculum": "rotational", "rotation": 0}, "rotation=0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LayerSkip(TERMS, **kwargs)
