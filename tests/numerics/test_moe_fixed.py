"""Bit-level MoE (hwgen.numerics.moe) against an independent per-token computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hwgen
from hwgen.errors import UnsupportedOpError
from hwgen.fixedpoint import FixedFormat, from_fixed, to_fixed
from hwgen.interp.moe import moe_reference
from hwgen.numerics.gelu import gelu_codes
from hwgen.numerics.linear import linear_codes
from hwgen.numerics.moe import combine_codes, moe_codes
from hwgen.numerics.topk import gate_weights, route
from hwgen.passes.formats import assign_formats

ACT, W = FixedFormat(32, 10), FixedFormat(16, 2)


def _rq(v: int, shift: int, fmt) -> int:
    """Round half up by ``shift`` bits, then clamp: written out with Python integers."""
    q = (v + (1 << (shift - 1))) >> shift if shift > 0 else v << -shift
    return min(max(q, fmt.qmin), fmt.qmax)


def _linear_py(x, w, b, gelu):
    fa = ACT.frac_bits + W.frac_bits
    out = []
    for n in range(len(w[0])):
        acc = sum(int(x[k]) * int(w[k][n]) for k in range(len(x)))
        if b is not None:
            acc += int(b[n]) << (fa - ACT.frac_bits)
        out.append(_rq(acc, fa - ACT.frac_bits, ACT))
    return [int(v) for v in gelu_codes(np.array(out), ACT, ACT)] if gelu else out


def _moe_py(x, gw, w1, b1, w2, b2, k, norm):
    """Token by token: scores, the k best (ties: lower index), experts in increasing id."""
    scores = [_linear_py(t, gw, None, False) for t in x]
    y = [[0] * len(w2[0][0]) for _ in x]
    picks = []
    for t, s in enumerate(scores):
        order = sorted(range(len(s)), key=lambda e: (-s[e], e))[:k]
        weights = gate_weights(np.array([s]), np.array([order]), ACT, ACT, norm)[0]
        picks.append(dict(zip(order, (int(v) for v in weights))))
    for e in range(len(w1)):
        for t in range(len(x)):
            if e not in picks[t]:
                continue
            h = _linear_py(x[t], w1[e], b1[e], True)
            o = _linear_py(h, w2[e], b2[e], False)
            for j, v in enumerate(o):
                p = _rq(picks[t][e] * v, ACT.frac_bits, ACT)
                y[t][j] = min(max(y[t][j] + p, ACT.qmin), ACT.qmax)
    return np.array(y)


def test_combine_is_one_rounding_then_a_saturating_add():
    rng = np.random.default_rng(0)
    y = rng.integers(ACT.qmin, ACT.qmax, (50, 8))
    h = rng.integers(ACT.qmin, ACT.qmax, (50, 8))
    w = rng.integers(0, 1 << ACT.frac_bits, 50)
    y[0, 0], h[0, 0], w[0] = ACT.qmax - 3, ACT.qmax, 1 << ACT.frac_bits  # saturates
    got = combine_codes(y, h, w, ACT)
    want = [[min(max(int(y[i, j]) + _rq(int(w[i]) * int(h[i, j]), ACT.frac_bits, ACT), ACT.qmin), ACT.qmax)
             for j in range(8)] for i in range(50)]
    np.testing.assert_array_equal(got, want)
    assert got[0, 0] == ACT.qmax


@pytest.mark.parametrize("norm", ["topk_then_softmax", "softmax_then_topk", "topk", "sigmoid_then_topk"])
@pytest.mark.parametrize("k", [1, 2])
def test_moe_codes_equals_a_token_by_token_computation(norm, k):
    rng = np.random.default_rng(k)
    t, d, e, h, dout = 9, 6, 4, 5, 6
    x = to_fixed(rng.normal(0, 1.5, (t, d)), ACT)
    gw = to_fixed(rng.normal(0, 0.5, (d, e)), W)
    gw[:, 3] = gw[:, 1]  # experts 1 and 3 always tie: 1 must win
    w1 = to_fixed(rng.normal(0, 0.5, (e, d, h)), W)
    b1 = to_fixed(rng.normal(0, 0.5, (e, h)), ACT)
    w2 = to_fixed(rng.normal(0, 0.5, (e, h, dout)), W)
    b2 = to_fixed(rng.normal(0, 0.5, (e, dout)), ACT)
    got = moe_codes(x, gw, None, w1, b1, w2, b2, k, "gelu", norm, ACT, W)
    want = _moe_py(x.tolist(), gw.tolist(), w1.tolist(), b1.tolist(), w2.tolist(), b2.tolist(), k, norm)
    np.testing.assert_array_equal(got, want)


def test_saturating_accumulation_in_expert_order():
    """Three experts: 0 and 1 together overflow Y, 2 is negative. Saturating after each
    add, in expert order (the hardware's), differs from saturating once at the end."""
    d, h, e = 2, 2, 3
    x = to_fixed(np.array([[1.0, 1.0]]), ACT)
    gw = to_fixed(np.array([[1.5, 1.0, 0.5], [1.5, 1.0, 0.5]]), W)  # scores 3, 2, 1 (topk: raw scores)
    w1 = to_fixed(np.full((e, d, h), 1.0), W)
    b1 = to_fixed(np.array([[80.0, 80.0], [120.0, 120.0], [100.0, 100.0]]), ACT)
    w2 = np.stack([to_fixed(np.full((h, 1), s), W) for s in (1.0, 1.0, -1.0)])
    got = moe_codes(x, gw, None, w1, b1, w2, None, 3, "identity", "topk", ACT, W)
    s = _linear_py(x[0], gw.tolist(), None, False)
    wts = [int(v) for v in gate_weights(np.array([s]), np.array([[0, 1, 2]]), ACT, ACT, "topk")[0]]
    o = [_linear_py(_linear_py(x[0], w1[i].tolist(), b1[i].tolist(), False), w2[i].tolist(), None, False)[0]
         for i in range(e)]
    p = [_rq(wts[i] * o[i], ACT.frac_bits, ACT) for i in range(e)]
    y = 0
    for v in p:  # the hardware's order
        y = min(max(y + v, ACT.qmin), ACT.qmax)
    at_end = min(max(sum(p), ACT.qmin), ACT.qmax)
    assert p[0] + p[1] > ACT.qmax and y != at_end  # the case exercises the order
    assert got[0, 0] == y


def _float_error_bound(ins, codes, fmts, attrs, act) -> tuple[np.ndarray, np.ndarray]:
    """(float MoE on the same quantised inputs, a bound on |fixed - float| per element).

    The fixed MoE differs from the float one on the same inputs by: the hardware GELU's
    table (at most ``e_gelu``, measured here on a dense grid against the erf form) and one
    rounding of each hidden code, carried through ``|w2|`` to each output; one rounding of
    each expert output and of each ``w x o`` product; and the gate weights' own error
    (``|w_fixed - w_float| x |o|``, the exp2 table and reciprocal of the softmax). Routing
    must be the same (asserted): a different expert would break the bound."""
    lsb = act.lsb
    x, gw, gb, w1, b1, w2, b2 = (None if v is None else np.asarray(v, dtype=np.float64) for v in ins)
    k, norm = attrs["top_k"], attrs["normalization"]
    assert attrs["activation"] == "gelu" and norm in ("softmax_topk_renorm", "topk_then_softmax")
    tok = x.reshape(-1, x.shape[-1])
    logits = tok @ gw + (0 if gb is None else gb)
    sel = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    z = np.take_along_axis(logits, sel, axis=-1)
    w_float = np.exp(z - z.max(-1, keepdims=True))
    w_float /= w_float.sum(-1, keepdims=True)
    scores = linear_codes(codes[0].reshape(tok.shape), codes[1], codes[2], act, fmts[1], act, act)
    experts, w_codes = route(scores, k, act, act, norm)
    np.testing.assert_array_equal(experts, sel)  # the fixed and float routings agree
    w_fixed = from_fixed(w_codes, act)
    grid = np.arange(-8, 8, 2.0**-12)
    e_gelu = np.max(np.abs(from_fixed(gelu_codes(to_fixed(grid, act), act, act), act) - _gelu_erf(grid)))
    bound = np.zeros((len(tok), w2.shape[-1]))
    for t in range(len(tok)):
        for j, e in enumerate(sel[t]):
            o = _gelu_erf(tok[t] @ w1[e] + b1[e]) @ w2[e] + b2[e]
            o_err = np.abs(w2[e]).sum(axis=0) * (e_gelu + 2 * lsb) + lsb
            bound[t] += w_fixed[t, j] * o_err + abs(w_fixed[t, j] - w_float[t, j]) * np.abs(o) + lsb
    y_float = moe_reference(x, gw, gb, w1, b1, w2, b2, k, attrs["activation"], norm)
    return y_float.reshape(len(tok), -1), bound


def _gelu_erf(v):
    return 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))


@pytest.mark.parametrize("gate", ["run-time gate", "task bound"])
def test_interpreter_runs_the_bit_level_moe_within_a_derived_bound_of_float(gate):
    """``interpret(numerics="fixed")`` on m3vit-tiny (two MoE layers, both tasks) runs
    :func:`moe_codes`. The canonical graph gathers each task's gate at run time, so the
    gate operand is not constant and keeps the activation format (fixed<32,10>; only a
    constant gate is a weight, fixed<16,2>); bound to a task (what the compiler runs), it
    is a constant weight. The fixed output stays within ``_float_error_bound`` of the
    float MoE on the same inputs."""
    g = hwgen.canonicalize(hwgen.load("m3vit-tiny"))
    worst = 0.0
    for task in (0, 1):
        if gate == "task bound":
            from fpga.compile.graph import hardware_graph
            from fpga.config import AcceleratorConfig

            hg, feeds = hardware_graph(g, AcceleratorConfig(), {"task": task}), {}
        else:
            hg, feeds = g, {"task": np.array(task, dtype=np.int64)}
        assign_formats(hg)  # what interpret(numerics="fixed") does to a graph without formats
        x = np.random.default_rng(3 + task).random((1, 1, 8, 8)).astype(np.float32) * 16
        fixed = hwgen.interpret(hg, {"image": x, **feeds}, numerics="fixed", keep_all=True)
        for moe in (n for n in hg.nodes if n.op == "MoE"):
            fmts = [hg.tensors[i].fmt if i else None for i in moe.inputs]
            assert fmts[1] == (ACT if gate == "run-time gate" else W) and fmts[3] == fmts[5] == W
            ins = [fixed[i] if i else None for i in moe.inputs]
            codes = [None if v is None else to_fixed(v, f) for v, f in zip(ins, fmts)]
            want = moe_codes(*codes, moe.attrs["top_k"], moe.attrs["activation"], moe.attrs["normalization"],
                             ACT, W, fmts[1])
            got = fixed[moe.outputs[0]]
            np.testing.assert_array_equal(to_fixed(got, ACT), want)
            y_float, bound = _float_error_bound(ins, codes, fmts, moe.attrs, ACT)
            err = np.abs(got.reshape(y_float.shape) - y_float)
            assert np.all(err <= bound), (err.max(), bound[err > bound])
            worst = max(worst, float(np.max(err / bound)))
    print(f"largest error / bound: {worst:.2f}")


def test_silu_experts_fall_back_to_float_by_name():
    """No engine runs silu experts: the fixed-point reference says so by name and computes
    the MoE in float on the quantized inputs (what the host runs), quantized."""
    from hwgen.numerics.fallback import FixedFallbackWarning

    from hwgen.passes.formats import assign_formats

    g = hwgen.canonicalize(hwgen.load("m3vit-tiny"))
    assign_formats(g)
    moe = next(n for n in g.nodes if n.op == "MoE")
    moe.attrs["activation"] = "silu"
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    feeds = {"image": x, "task": np.array(0, dtype=np.int64)}
    with pytest.warns(FixedFallbackWarning, match="activation 'silu'"):
        fixed = hwgen.interpret(g, feeds, numerics="fixed", keep_all=True)
    flt = hwgen.interpret(g, feeds, keep_all=True)
    y = moe.outputs[0]
    fmt = g.tensors[y].fmt
    assert np.all(fixed[y] * 2.0**fmt.frac_bits == np.round(fixed[y] * 2.0**fmt.frac_bits))  # on the output's grid
    assert np.max(np.abs(fixed[y] - flt[y])) < 0.05 * np.max(np.abs(flt[y])) + 2.0**-fmt.frac_bits
