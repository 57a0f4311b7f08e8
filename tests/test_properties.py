"""Property-based checks (hypothesis) of the IDX reader and the learning-rate schedule."""

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerwise import warmup_linear_decay
from layerwise.data import DataError, parse_idx

_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def _encode(a: np.ndarray) -> bytes:
    head = bytes([0, 0, _CODES[a.dtype], a.ndim]) + b"".join(struct.pack(">I", s) for s in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        st.sampled_from(list(_CODES)),
        st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
        elements={"allow_nan": False},
    )
)
def test_idx_round_trip(a):
    out = parse_idx(_encode(a))
    assert out.shape == a.shape and out.dtype == a.dtype
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(parse_idx(gzip.decompress(gzip.compress(_encode(a)))), a)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.integers(1, 50)), st.integers(1, 40))
def test_idx_any_truncation_is_detected(a, cut):
    data = _encode(a)
    with pytest.raises(DataError):
        parse_idx(data[: max(len(data) - cut, 0)])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.data())
def test_schedule_shape(epochs, data):
    warmup = data.draw(st.integers(0, epochs - 1))
    f = warmup_linear_decay(epochs, warmup)
    values = [f(e) for e in range(epochs)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[warmup] == 1.0  # peak right after the warm-up
    assert all(a <= b for a, b in zip(values[:warmup], values[1 : warmup + 1], strict=True))  # rises
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :], strict=False))  # then decays
    assert values[-1] > 0.0 and (warmup == 0 or values[0] == 0.0)
