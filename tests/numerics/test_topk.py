"""MoE routing: top-k with ties to the lower index, gate weights, expert schedule."""

import numpy as np
import pytest

from hwgen.fixedpoint import FixedFormat, from_fixed, to_fixed
from hwgen.numerics.topk import expert_schedule, gate_weights, route, topk_codes

ACT = FixedFormat(32, 10)


def test_topk_ties_go_to_lower_index():
    s = np.array([[5, 7, 7, 1, 7], [0, 0, 0, 0, 0], [ACT.qmin, ACT.qmin, ACT.qmax, ACT.qmin, ACT.qmin]])
    assert topk_codes(s, 2).tolist() == [[1, 2], [0, 1], [2, 0]]
    assert topk_codes(s, 5)[0].tolist() == [1, 2, 4, 0, 3]


def test_topk_vs_independent_sort():
    rng = np.random.default_rng(0)
    s = rng.integers(-4, 4, (2000, 16))  # many ties
    got = topk_codes(s, 3)
    for row, idx in zip(s, got):
        want = sorted(range(16), key=lambda e: (-row[e], e))[:3]
        assert idx.tolist() == want


def test_topk_bad_k():
    with pytest.raises(ValueError, match="1 <= k <= 4"):
        topk_codes(np.zeros((1, 4)), 5)


def test_gate_weights_softmax_vs_float():
    rng = np.random.default_rng(1)
    scores = to_fixed(rng.normal(0, 2, (500, 16)), ACT)
    experts, w = route(scores, 2, ACT, ACT)
    sel = from_fixed(np.take_along_axis(scores, experts, -1), ACT)
    ref = np.exp(sel) / np.exp(sel).sum(-1, keepdims=True)
    got = from_fixed(w, ACT)
    assert np.all(np.abs(got - ref) <= 0.004 * ref + 2.0**-15)
    assert np.all(got[:, 0] >= got[:, 1])
    assert np.array_equal(gate_weights(sel * 0, ACT, ACT, "none"), np.zeros_like(sel))
    with pytest.raises(ValueError, match="supported: softmax, none"):
        gate_weights(sel, ACT, ACT, "sparsemax")


def test_expert_schedule():
    experts = np.array([[3, 1], [1, 0], [3, 0], [1, 3]])
    assert expert_schedule(experts) == [(0, [1, 2]), (1, [0, 1, 3]), (3, [0, 2, 3])]
