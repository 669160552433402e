"""hwgen.numerics GELU, linear, LayerNorm and residual against float references and
against the interpreter's fixed kernels (fast: no simulator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwgen.fixedpoint import ACT_DEFAULT, WEIGHT_DEFAULT, FixedFormat, from_fixed, quantize, to_fixed
from hwgen.numerics.gelu import TABLE_ENTRIES, delta_table, gelu_codes
from hwgen.numerics.layernorm import layernorm_codes, rsqrt_fixed
from hwgen.numerics.linear import linear_codes
from hwgen.numerics.residual import residual_codes

F = ACT_DEFAULT


def _gelu(v):
    return np.array([t * 0.5 * (1 + math.erf(t / math.sqrt(2))) for t in np.ravel(v)]).reshape(np.shape(v))


def test_delta_table_shape_and_ends():
    t = delta_table()
    assert len(t) == TABLE_ENTRIES == 177
    assert t[0] == 0 and t[-1] == 0  # delta(0) = 0; delta(5.5) = 5.5*Phi(-5.5) < 2**-17
    assert t[24] == math.floor(0.75 * 0.5 * math.erfc(0.75 / math.sqrt(2)) * 65536 + 0.5)


def test_gelu_error_bound_vs_exact():
    """Interpolation error of delta at step 1/32 is h**2/8 * max|delta''| ~ 1.0e-4, plus the
    2**-22 output rounding and 2**-17 table rounding."""
    x = quantize(np.linspace(-9, 9, 200_001), F)
    y = from_fixed(gelu_codes(to_fixed(x, F), F, F), F)
    err = np.abs(y - _gelu(x))
    assert err.max() < 1.1e-4
    big = np.abs(x) >= 5.5
    assert np.array_equal(y[big], quantize(np.maximum(x[big], 0), F))  # ReLU beyond 5.5


def test_gelu_edges():
    for fmt in (F, FixedFormat(8, 3), FixedFormat(16, 12)):  # F=22, 5 (no fraction bits left), 4 (< 5)
        q = np.array([0, fmt.qmin, fmt.qmax, -1, 1])
        y = gelu_codes(q, fmt, fmt)
        assert y[0] == 0 and y[2] == fmt.qmax and y[1] == 0  # most negative: GELU -> 0
        exact = _gelu(from_fixed(q, fmt))
        assert np.all(np.abs(from_fixed(y, fmt) - exact) <= 1.1e-4 + fmt.lsb)
    # narrow output saturates
    assert gelu_codes(np.array([F.qmax]), F, FixedFormat(8, 2))[0] == 127


def test_linear_exact_and_vs_float():
    rng = np.random.default_rng(0)
    xq = to_fixed(rng.normal(0, 2, (7, 192)), F)
    wq = to_fixed(rng.normal(0, 0.1, (192, 5)), WEIGHT_DEFAULT)
    bq = to_fixed(rng.normal(0, 1, 5), F)
    y = linear_codes(xq, wq, bq, F, WEIGHT_DEFAULT, F, F)
    # independent: Python ints, exact rational, then round half up
    for m in range(7):
        for n in range(5):
            acc = sum(int(xq[m, k]) * int(wq[k, n]) for k in range(192)) + (int(bq[n]) << 14)
            assert y[m, n] == (acc + (1 << 13)) >> 14
    ref = from_fixed(xq, F) @ from_fixed(wq, WEIGHT_DEFAULT) + from_fixed(bq, F)
    assert np.abs(from_fixed(y, F) - ref).max() <= F.lsb / 2
    g = linear_codes(xq, wq, bq, F, WEIGHT_DEFAULT, F, F, gelu=True)
    assert np.array_equal(g, gelu_codes(y, F, F))
    # saturation into a narrow output
    big = linear_codes(np.full((1, 4), F.qmax), np.full((4, 1), WEIGHT_DEFAULT.qmax), None, F, WEIGHT_DEFAULT, None,
                       FixedFormat(16, 4))
    assert big[0, 0] == FixedFormat(16, 4).qmax


def test_rsqrt():
    for d in (1, 2, 3, 10**6, 2**80 + 12345):
        r, big_r = rsqrt_fixed(d)
        assert r * r * d <= 1 << (2 * big_r) < (r + 1) * (r + 1) * d
        assert r >= 1 << 23


def test_layernorm_vs_numpy():
    rng = np.random.default_rng(1)
    x = quantize(rng.normal(0.5, 3, (40, 192)), F)
    g = quantize(rng.normal(1, 0.2, 192), F)
    b = quantize(rng.normal(0, 0.5, 192), F)
    y = from_fixed(layernorm_codes(to_fixed(x, F), to_fixed(g, F), to_fixed(b, F), F, F, F, F), F)
    m = x.mean(-1, keepdims=True)
    ref = (x - m) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b
    assert np.abs(y - ref).max() < 4 * F.lsb
    # constant row: variance 0, result beta
    c = layernorm_codes(np.full((1, 8), 12345), None, to_fixed(np.arange(8) / 4, F), F, None, F, F)
    assert np.array_equal(c[0], to_fixed(np.arange(8) / 4, F))


def test_residual_saturates_and_aligns():
    a = np.array([F.qmax, F.qmin, 5, -7])
    b = np.array([1, -1, 3, 2])
    assert residual_codes(a, b, F, F, F).tolist() == [F.qmax, F.qmin, 8, -5]
    # fixed<8,4> (4 frac) + fixed<8,6> (2 frac) -> fixed<6,4> (2 frac): 0.5625+0.75=1.3125 -> 1.25 (half up)
    assert residual_codes(np.array([9]), np.array([3]), FixedFormat(8, 4), FixedFormat(8, 6),
                          FixedFormat(6, 4)).tolist() == [5]


@pytest.mark.parametrize("op", ["Gelu", "LayerNormalization", "Gemm", "Add"])
def test_interpreter_uses_the_fixed_kernels(op):
    from hwgen.frontend import from_onnx
    from hwgen.interp import interpret
    rng = np.random.default_rng(2)
    x = rng.normal(0, 2, (3, 6)).astype(np.float32)
    inits = []
    if op == "Gelu":
        node = helper.make_node("Gelu", ["x"], ["y"], name="n")
    elif op == "LayerNormalization":
        inits = [("g", rng.normal(1, .1, 6).astype(np.float32)), ("b", rng.normal(0, .1, 6).astype(np.float32))]
        node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="n", axis=-1)
    elif op == "Gemm":
        inits = [("w", rng.normal(0, .3, (6, 6)).astype(np.float32)), ("b", rng.normal(0, 1, 6).astype(np.float32))]
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="n")
    else:
        inits = [("c", rng.normal(0, 1, (3, 6)).astype(np.float32))]
        node = helper.make_node("Add", ["x", "c"], ["y"], name="n")
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 8
    graph = from_onnx(m)
    y = interpret(graph, {"x": x}, numerics="fixed")["y"]
    xq = to_fixed(x, F)
    init = dict(inits)
    if op == "Gelu":
        want = gelu_codes(xq, F, F)
    elif op == "LayerNormalization":
        want = layernorm_codes(xq, to_fixed(init["g"], F), to_fixed(init["b"], F), F, F, F, F)
    elif op == "Gemm":
        want = linear_codes(xq, to_fixed(init["w"], WEIGHT_DEFAULT), to_fixed(init["b"], F), F, WEIGHT_DEFAULT, F, F)
    else:
        want = residual_codes(xq, to_fixed(init["c"], F), F, F, F)
    assert np.array_equal(to_fixed(y, F), want)
    assert np.array_equal(from_fixed(want, F), y)


def test_linear_of_two_activations_is_exact_beyond_int64():
    """Q @ K^T style: two fixed<32,10> operands; sums need more than 63 bits."""
    rng = np.random.default_rng(3)
    a = rng.integers(F.qmin, F.qmax + 1, (3, 16))
    b = rng.integers(F.qmin, F.qmax + 1, (16, 2))
    a[0] = F.qmin
    b[:, 0] = F.qmin
    y = linear_codes(a, b, None, F, F, None, FixedFormat(48, 40))
    for m in range(3):
        for n in range(2):
            acc = sum(int(a[m, k]) * int(b[k, n]) for k in range(16))
            want = min(max((acc + (1 << 35)) >> 36, -(1 << 47)), (1 << 47) - 1)
            assert y[m, n] == want
