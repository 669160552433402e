"""Fixed-point kernels of MatMul/Gemm/Conv, Gelu, LayerNormalization and Add for
``interpret(..., numerics="fixed")``: integer codes in, the arithmetic of
:mod:`hwgen.numerics.linear`, :mod:`~hwgen.numerics.gelu`,
:mod:`~hwgen.numerics.layernorm` and :mod:`~hwgen.numerics.residual`, codes out.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..fixedpoint import from_fixed, quantize, shift_round, to_fixed
from ..interp.registry import FLOAT_OPS, register_fixed
from .gelu import gelu_codes
from .layernorm import layernorm_codes
from .linear import exact_products, requantize_wide
from .fallback import warn_fallback
from .residual import residual_codes

__all__ = ["linear_fixed", "gelu_fixed", "layernorm_fixed", "add_fixed"]


def _need(node, fmts, idx, what):
    for i in idx:
        if i >= len(fmts) or fmts[i] is None:
            raise UnsupportedOpError(f"node {node.name!r} ({node.op}): {what} {i} has no fixed-point format")


def _float_then_quantize(node, inputs, out_fmts, opset, why: str):
    warn_fallback(node, why, out_fmts)
    outs = FLOAT_OPS[node.op](node, inputs, opset)
    return tuple(quantize(o, f) if f is not None else o for o, f in zip(outs, out_fmts))


@register_fixed("MatMul", "Gemm", "Conv")
def linear_fixed(node, inputs, in_fmts, out_fmts, opset):
    """Exact integer accumulation of code products, bias aligned, one requantize."""
    if node.op == "Gemm" and (float(node.attrs.get("alpha", 1.0)) != 1.0 or float(node.attrs.get("beta", 1.0)) != 1.0):
        return _float_then_quantize(node, inputs, out_fmts, opset, "Gemm with alpha/beta != 1 is not a linear-unit op")
    _need(node, in_fmts, (0, 1), "input")
    _need(node, out_fmts, (0,), "output")
    x_fmt, w_fmt, out_fmt = in_fmts[0], in_fmts[1], out_fmts[0]
    x, w = to_fixed(inputs[0], x_fmt), to_fixed(inputs[1], w_fmt)
    k = int(np.prod(w.shape[1:])) if node.op == "Conv" else (w.shape[1] if int(node.attrs.get("transB", 0)) and node.op == "Gemm" else w.shape[-2] if w.ndim >= 2 else w.shape[0])
    fa = x_fmt.frac_bits + w_fmt.frac_bits
    if node.op == "Conv":  # the float kernel's im2col einsum on int64 codes is exact
        acc = exact_products(lambda a, b: FLOAT_OPS["Conv"](node, [a, b], opset)[0], x, w, x_fmt, w_fmt, k)
    elif node.op == "Gemm":
        a = x.T if int(node.attrs.get("transA", 0)) else x
        b = w.T if int(node.attrs.get("transB", 0)) else w
        acc = exact_products(np.matmul, a, b, x_fmt, w_fmt, k)
    else:
        acc = exact_products(np.matmul, x, w, x_fmt, w_fmt, k)
    bias = inputs[2] if len(inputs) > 2 and node.op in ("Gemm", "Conv") else None
    if bias is not None:
        _need(node, in_fmts, (2,), "input")
        b = shift_round(to_fixed(bias, in_fmts[2]), in_fmts[2].frac_bits - fa)
        if node.op == "Conv":
            b = b.reshape((1, -1) + (1,) * (acc.ndim - 2))
        acc = acc + b
    return (from_fixed(requantize_wide(acc, fa, out_fmt), out_fmt),)


@register_fixed("Gelu")
def gelu_fixed(node, inputs, in_fmts, out_fmts, opset):
    """Edge-MoE GELU (table of delta, linear interpolation); both ONNX approximations
    (``none``, ``tanh``) map to the same hardware."""
    _need(node, in_fmts, (0,), "input")
    _need(node, out_fmts, (0,), "output")
    return (from_fixed(gelu_codes(to_fixed(inputs[0], in_fmts[0]), in_fmts[0], out_fmts[0]), out_fmts[0]),)


@register_fixed("LayerNormalization")
def layernorm_fixed(node, inputs, in_fmts, out_fmts, opset):
    """Single-pass LayerNorm over the last axis (``axis`` must be the last one)."""
    x = inputs[0]
    axis = int(node.attrs.get("axis", -1)) % x.ndim
    if axis != x.ndim - 1:
        return _float_then_quantize(node, inputs, out_fmts, opset, f"LayerNormalization over axis {axis} (the unit normalises the last axis)")
    if len([o for o in node.outputs if o]) > 1:
        return _float_then_quantize(node, inputs, out_fmts, opset, "LayerNormalization's mean/inv_std_dev outputs are not the unit's")
    _need(node, in_fmts, (0, 1), "input")
    _need(node, out_fmts, (0,), "output")
    gamma = inputs[1]
    beta = inputs[2] if len(inputs) > 2 else None
    if np.size(gamma) != x.shape[-1] or (beta is not None and np.size(beta) != x.shape[-1]):
        return _float_then_quantize(node, inputs, out_fmts, opset, "LayerNormalization with broadcast scale/bias")
    b_fmt = in_fmts[2] if beta is not None else None
    if beta is not None:
        _need(node, in_fmts, (2,), "input")
    y = layernorm_codes(
        to_fixed(x, in_fmts[0]), to_fixed(gamma, in_fmts[1]).reshape(-1),
        None if beta is None else to_fixed(beta, b_fmt).reshape(-1),
        in_fmts[0], in_fmts[1], b_fmt, out_fmts[0], eps=float(node.attrs.get("epsilon", 1e-5)),
    )
    return (from_fixed(y, out_fmts[0]),)


@register_fixed("Add")
def add_fixed(node, inputs, in_fmts, out_fmts, opset):
    """Saturating add of two fixed-point tensors (broadcasting as ONNX)."""
    if any(f is None for f in list(in_fmts[:2]) + [out_fmts[0]]):  # integer Add: exact
        return tuple(FLOAT_OPS["Add"](node, inputs, opset))
    a, b = (to_fixed(v, f) for v, f in zip(inputs[:2], in_fmts[:2]))
    return (from_fixed(residual_codes(a, b, in_fmts[0], in_fmts[1], out_fmts[0]), out_fmts[0]),)
