import pytest

from layerwise import warmup_linear_decay


def test_official_schedule():
    f = warmup_linear_decay(100)
    assert f(0) == 0.0  # epoch 0 runs at lr 0
    assert f(1) == pytest.approx(0.2) and f(4) == pytest.approx(0.8)
    assert f(5) == 1.0
    assert f(50) == pytest.approx(50 / 95)
    assert f(99) == pytest.approx(1 / 95)


def test_short_run_scales():
    f = warmup_linear_decay(20)  # 5% of 20 = 1 warm-up epoch
    assert [f(0), f(1), f(19)] == [0.0, 1.0, pytest.approx(1 / 19)]
    g = warmup_linear_decay(4)  # no warm-up below 10 epochs
    assert [g(e) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize(
    "epochs,warmup,match",
    [(0, None, "Invalid epochs=0"), (10, 10, "Invalid warmup_epochs=10"), (10, -1, "Invalid warmup_epochs=-1")],
)
def test_invalid(epochs, warmup, match):
    with pytest.raises(ValueError, match=match):
        warmup_linear_decay(epochs, warmup)
