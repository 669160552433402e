"""Fixed-point online softmax vs float numpy, and its building blocks."""

import math

import numpy as np
import pytest

from hwgen.fixedpoint import FixedFormat, from_fixed, shift_round, to_fixed
from hwgen.numerics.softmax import (
    SOFTMAX_DEFAULT,
    exp2_neg,
    exp2_table,
    online_step,
    reciprocal,
    scale_code,
    softmax_codes,
    wide_requantize,
    wide_shift_round,
)

ACT = FixedFormat(32, 10)
SPEC = SOFTMAX_DEFAULT


def _float_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_exp2_table():
    tab = exp2_table(SPEC)
    assert len(tab) == 256 and tab[0] == 1 << 16
    ref = np.exp2(-np.arange(256) / 256) * 2**16
    assert np.all(np.abs(tab - ref) <= 0.5)
    assert np.all(np.diff(tab) < 0)


def test_exp2_neg_error_bound():
    u = np.arange(0, 30 << 12, 7)
    got = exp2_neg(u, SPEC) / 2.0**16
    ref = np.exp2(-u / 2.0**12)
    rel = 2 ** (2.0**-9) - 1  # index rounded to 1/256
    assert np.all(np.abs(got - ref) <= rel * ref + 2.0**-16)
    assert exp2_neg(0, SPEC) == 1 << 16
    assert exp2_neg(1 << 22, SPEC) == 0  # huge gaps underflow to exactly 0


def test_wide_helpers_match_fixedpoint():
    rng = np.random.default_rng(1)
    q = rng.integers(-(2**40), 2**40, 1000)
    for s in (-3, 0, 1, 5, 17):
        assert np.array_equal(wide_shift_round(q.astype(object), s).astype(np.int64), shift_round(q, s))
    big = np.array([2**70, -(2**70), 3], dtype=object)
    assert list(wide_requantize(big, 40, ACT)) == [ACT.qmax, ACT.qmin, 0]


def test_online_step_picks_the_rescale():
    m, l, a, b = online_step(np.int64(0), np.int64(1 << 16), np.int64(1 << 12), SPEC)  # new max, 1 higher
    assert (int(m), int(a), int(b)) == (1 << 12, 1 << 15, 1 << 16) and int(l) == (1 << 15) + (1 << 16)
    m, l, a, b = online_step(m, l, np.int64(0), SPEC)
    assert int(a) == 1 << 16 and int(b) == 1 << 15


def test_reciprocal_rounds_half_up():
    l = np.array([1 << 16, 3 << 16, 129 << 16, (1 << 16) + 1])
    exact = 2.0**40 / l
    assert np.all(np.abs(reciprocal(l, SPEC) - exact) <= 0.5)


def test_scale_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        scale_code(100.0)
    assert scale_code(1.0) == math.floor(1.4426950408889634 * 2**16 + 0.5)


@pytest.mark.parametrize("n", [1, 2, 17, 129])
def test_softmax_vs_float(n):
    rng = np.random.default_rng(n)
    x = rng.normal(0, 3, (300, n))
    codes = to_fixed(x, ACT)
    got = from_fixed(softmax_codes(codes, ACT.frac_bits, ACT), ACT)
    ref = _float_softmax(from_fixed(codes, ACT))
    # exp2: 0.14 % (index) + logit rounding; the sum likewise; + table/shift LSBs
    assert np.all(np.abs(got - ref) <= 0.004 * ref + n * 2.0**-16)
    assert np.all(np.abs(got.sum(-1) - 1) <= 0.004 + n * 2.0**-16)


def test_softmax_edges():
    # all equal -> exactly uniform up to the reciprocal's rounding; one element -> 1.0
    for n in (1, 4, 16):
        codes = np.zeros((1, n), dtype=np.int64)
        got = from_fixed(softmax_codes(codes, ACT.frac_bits, ACT), ACT)
        assert np.all(np.abs(got - 1 / n) <= 2.0**-22)
    # most negative and most positive codes: saturated logits, no overflow
    codes = np.array([[ACT.qmin, ACT.qmax, 0, ACT.qmin]])
    got = from_fixed(softmax_codes(codes, ACT.frac_bits, ACT), ACT)
    assert got[0, 1] == 1.0 and got[0, 0] == 0 and got[0, 2] == 0
    # axis other than last
    x = to_fixed(np.random.default_rng(0).normal(size=(3, 5, 2)), ACT)
    a = softmax_codes(x, ACT.frac_bits, ACT, axis=1)
    b = np.moveaxis(softmax_codes(np.moveaxis(x, 1, -1), ACT.frac_bits, ACT), -1, 1)
    assert np.array_equal(a, b)


def test_small_output_format_saturates():
    fmt = FixedFormat(8, 1)  # max 127/128: a certain 1.0 saturates
    codes = np.array([[0, ACT.qmin]])
    assert list(softmax_codes(codes, ACT.frac_bits, fmt)[0]) == [127, 0]
