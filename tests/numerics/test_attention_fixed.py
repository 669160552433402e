"""Fixed-point attention vs float numpy; the registered kernels."""

import numpy as np
import pytest

from hwgen.errors import UnsupportedOpError
from hwgen.fixedpoint import FixedFormat, from_fixed, to_fixed
from hwgen.interp.registry import FIXED_OPS
from hwgen.ir import Node
from hwgen.numerics import kernels_attention  # noqa: F401  (registers the kernels)
from hwgen.numerics.attention import attention_codes
from hwgen.numerics.softmax import online_step, reciprocal, softmax_codes

ACT = FixedFormat(32, 10)


def _float_attention(q, kT, v, scale, bias=None):
    s = q @ kT * scale
    if bias is not None:
        s = s + bias
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def _q(x):
    return from_fixed(to_fixed(x, ACT), ACT)


@pytest.mark.parametrize("shape", [(1, 1, 4, 1, 4), (2, 3, 17, 16, 8), (1, 2, 9, 64, 33)])
def test_attention_vs_float(shape):
    b, h, s, d, dv = shape
    rng = np.random.default_rng(s)
    q, kT, v = (_q(rng.normal(0, 1, sh)) for sh in ((b, h, s, d), (b, h, d, s), (b, h, s, dv)))
    scale = 1 / np.sqrt(d)
    got = from_fixed(attention_codes(*(to_fixed(a, ACT) for a in (q, kT, v)), (ACT,) * 3, ACT, scale=scale), ACT)
    ref = _float_attention(q, kT, v, scale)
    vmax = np.abs(v).max()
    # per probability 0.4 % relative + LSBs (test_softmax), summed against |v|
    assert np.all(np.abs(got - ref) <= (0.004 + s * 2.0**-15) * vmax + 2.0**-22)


def test_attention_equals_softmax_then_matmul_on_one_hot_values():
    # with v = identity, attention's rows are the probabilities the online pass produced
    rng = np.random.default_rng(3)
    n = 12
    q = to_fixed(rng.normal(0, 2, (5, 4)), ACT)
    kT = to_fixed(rng.normal(0, 2, (4, n)), ACT)
    v = np.eye(n, dtype=np.int64) << ACT.frac_bits
    got = from_fixed(attention_codes(q, kT, v, (ACT,) * 3, ACT), ACT)
    ref = from_fixed(softmax_codes(np.matmul(q.astype(object), kT), 2 * ACT.frac_bits, ACT), ACT)
    # same logits; the online rescaling multiplies table values (2^-x 2^-y != 2^-(x+y) to 0.14 %)
    assert np.all(np.abs(got - ref) <= 0.004 * ref + 2.0**-16)


def test_attention_manual_two_keys():
    # bits by hand: q.k = [0, 1] (base-e) -> t = [0, round(log2 e * 2^12)]
    f = FixedFormat(16, 8)
    q = np.array([[1 << 8]])
    kT = np.array([[0, 1 << 8]])
    v = np.array([[1 << 8], [0]])
    spec_one = 1 << 16
    t1 = (256 * 256 * 94548 + (1 << 19)) >> 20  # requantize 8+8+16 -> 12 fraction bits
    m, l, a, b = online_step(np.int64(-(1 << 23)), np.int64(0), np.int64(0))
    acc = b * 256
    m, l, a, b = online_step(m, l, np.int64(t1))
    acc = ((acc * a + (1 << 15)) >> 16) + b * 0
    r = reciprocal(l)
    want = (int(acc) * int(r) + (1 << 39)) >> 40
    got = attention_codes(q, kT, v, (f, f, f), f)
    assert int(got[0, 0]) == want and abs(want / 256 - 1 / (1 + np.e)) < 2e-3
    assert spec_one == 65536


def test_saturation_and_extremes():
    q = np.full((2, 4), ACT.qmax)
    q[1] = ACT.qmin
    kT = np.full((4, 3), ACT.qmin)
    v = np.array([[ACT.qmax], [ACT.qmin], [0]])
    got = attention_codes(q, kT, v, (ACT,) * 3, ACT)
    # equal logits (saturated) -> a third each of qmax + qmin + 0 = -1 LSB / 3
    assert np.all(np.abs(got + 0) <= 1)
    z = attention_codes(np.zeros((1, 4), np.int64), np.zeros((4, 5), np.int64), np.zeros((5, 2), np.int64), (ACT,) * 3, ACT)
    assert np.all(z == 0)


def _node(op, domain="", **attrs):
    return Node(op, "n0", [], [], attrs, domain)


def test_registered_attention_kernel_with_bias():
    rng = np.random.default_rng(5)
    q, kT, v = _q(rng.normal(size=(2, 6, 8))), _q(rng.normal(size=(2, 8, 6))), _q(rng.normal(size=(2, 6, 4)))
    bias = np.zeros((6, 6))
    bias[:, 3:] = -1e4  # mask; saturates to the format's minimum
    bias = _q(bias)
    fn = FIXED_OPS["hwgen.Attention"]
    (out,) = fn(_node("Attention", "hwgen", scale=0.5), [q, kT, v, bias], [ACT] * 4, [ACT], 17)
    ref = _float_attention(q, kT, v, 0.5, bias)
    assert np.all(np.abs(out - ref) <= 0.004 * np.abs(v).max() + 6 * 2.0**-15)
    assert np.array_equal(out, _q(out))
    with pytest.raises(UnsupportedOpError, match="no fixed-point format"):
        fn(_node("Attention", "hwgen"), [q, kT, v], [ACT, None, ACT], [ACT], 17)
    with pytest.raises(UnsupportedOpError, match="outside"):
        fn(_node("Attention", "hwgen", scale=50.0), [q, kT, v], [ACT] * 3, [ACT], 17)


def test_registered_softmax_kernel_axes_and_opsets():
    fn = FIXED_OPS["Softmax"]
    x = _q(np.random.default_rng(6).normal(size=(2, 3, 4)))
    (a,) = fn(_node("Softmax", axis=1), [x], [ACT], [ACT], 17)
    ref = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    assert np.all(np.abs(a - ref) <= 0.004 * ref + 2.0**-14)
    (b,) = fn(_node("Softmax", axis=1), [x], [ACT], [ACT], 11)  # coerced to 2-D [2, 12]
    flat = x.reshape(2, 12)
    ref2 = (np.exp(flat) / np.exp(flat).sum(1, keepdims=True)).reshape(x.shape)
    assert np.all(np.abs(b - ref2) <= 0.004 * ref2 + 2.0**-14)
    with pytest.raises(UnsupportedOpError, match="axis"):
        fn(_node("Softmax", axis=3), [x], [ACT], [ACT], 17)


def test_interpret_fixed_runs_the_attention_and_softmax_kernels():
    """ONNX MatMul-Mul-Softmax-MatMul and a lone Softmax, fused and run with
    numerics="fixed": the results are hwgen.numerics' codes, bit for bit."""
    from onnx import TensorProto, helper

    from hwgen.frontend import from_onnx
    from hwgen.interp import interpret
    from hwgen.passes import canonicalize

    s, d = 6, 8
    nodes = [
        helper.make_node("MatMul", ["q", "kT"], ["s"]),
        helper.make_node("Mul", ["s", "c"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
        helper.make_node("Softmax", ["q"], ["z"], axis=-1),
    ]
    f32 = TensorProto.FLOAT
    g = helper.make_graph(
        nodes, "att",
        [helper.make_tensor_value_info("q", f32, [s, d]), helper.make_tensor_value_info("kT", f32, [d, s]),
         helper.make_tensor_value_info("v", f32, [s, d])],
        [helper.make_tensor_value_info("y", f32, [s, d]), helper.make_tensor_value_info("z", f32, [s, d])],
        [helper.make_tensor("c", f32, [], [0.25])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    graph = canonicalize(from_onnx(m))
    assert [n.op for n in graph.nodes].count("Attention") == 1
    rng = np.random.default_rng(9)
    feeds = {n: rng.normal(size=sh).astype(np.float32) for n, sh in (("q", (s, d)), ("kT", (d, s)), ("v", (s, d)))}
    out = interpret(graph, feeds, numerics="fixed")
    q, kT, v = (to_fixed(feeds[n], ACT) for n in ("q", "kT", "v"))
    want_y = from_fixed(attention_codes(q, kT, v, (ACT,) * 3, ACT, scale=0.25), ACT)
    want_z = from_fixed(softmax_codes(q, ACT.frac_bits, ACT), ACT)
    assert np.array_equal(out["y"], want_y)
    assert np.array_equal(out["z"], want_z)
