"""MoE routing: top-k with ties to the lower index, gate weights, expert schedule."""

import numpy as np
import pytest

from hwgen.fixedpoint import FixedFormat, from_fixed, to_fixed
from hwgen.numerics.topk import NORMALIZATIONS, expert_schedule, gate_weights, route, topk_codes

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


def _float_gates(logits, k, normalization):
    """hwgen.MoE's gating in float (as in hwgen/interp/moe.py's docstring)."""
    sm = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)  # noqa: E731
    if normalization in ("softmax_then_topk", "softmax_topk_renorm"):
        score = sm(logits)
    elif normalization == "sigmoid_then_topk":
        score = 1 / (1 + np.exp(-logits))
    else:
        score = logits
    sel = np.argsort(-score, axis=-1, kind="stable")[:, :k]
    vals = np.take_along_axis(score, sel, -1)
    if normalization == "softmax_topk_renorm":
        vals = vals / vals.sum(-1, keepdims=True)
    elif normalization == "topk_then_softmax":
        vals = sm(vals)
    return sel, vals


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_gate_weights_vs_float(normalization):
    rng = np.random.default_rng(1)
    scores = to_fixed(rng.normal(0, 2, (500, 16)), ACT)  # distinct: the float order is unambiguous
    experts, w = route(scores, 2, ACT, ACT, normalization)
    ref_sel, ref = _float_gates(from_fixed(scores, ACT), 2, normalization)
    assert np.array_equal(experts, ref_sel)
    got = from_fixed(w, ACT)
    # exp2 table (0.14 %) in numerator and sum, + LSBs of the table, shift and reciprocal
    assert np.all(np.abs(got - ref) <= 0.004 * np.abs(ref) + 2.0**-15)


def test_gate_weights_edges():
    sel = np.array([[3, 0]])
    assert np.array_equal(gate_weights(np.zeros((1, 4), np.int64), sel, ACT, ACT, "topk"), np.zeros((1, 2)))
    w = from_fixed(gate_weights(np.zeros((1, 4), np.int64), sel, ACT, ACT, "sigmoid_then_topk"), ACT)
    assert np.all(w == 0.5)
    w = from_fixed(gate_weights(np.zeros((1, 4), np.int64), sel, ACT, ACT, "softmax_then_topk"), ACT)
    assert np.all(w == 0.25)
    with pytest.raises(ValueError, match="supported: softmax_then_topk"):
        gate_weights(np.zeros((1, 4), np.int64), sel, ACT, ACT, "sparsemax")


def test_normalizations_are_hwgen_moe_s():
    from hwgen.interp.moe import NORMALIZATIONS as MOE_NORMALIZATIONS

    assert set(NORMALIZATIONS) == set(MOE_NORMALIZATIONS)


def test_expert_schedule():
    experts = np.array([[3, 1], [1, 0], [3, 0], [1, 3]])
    assert expert_schedule(experts) == [(0, [1, 2]), (1, [0, 1, 3]), (3, [0, 2, 3])]
