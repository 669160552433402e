"""Matrix and neural-network ops: MatMul, Gemm, Conv, Einsum, Softmax, LayerNormalization."""

from __future__ import annotations

import numpy as np

from ..functions import softmax as _softmax
from ..registry import check_alloc, register
from ._util import fail


@register("MatMul")
def matmul(node, inputs, opset):
    a, b = inputs
    if a.ndim == 0 or b.ndim == 0:
        fail(node, "MatMul of a scalar")
    return (np.matmul(a, b),)


@register("Gemm")
def gemm(node, inputs, opset):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if int(node.attrs.get("transA", 0)):
        a = a.T
    if int(node.attrs.get("transB", 0)):
        b = b.T
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    y = np.matmul(a, b)
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if c is not None:
        y = y + (c * np.asarray(beta, c.dtype) if beta != 1.0 else c)
    return (y.astype(a.dtype, copy=False),)


def _conv_pads(node, in_spatial, k_spatial, strides, dilations):
    nd = len(in_spatial)
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "", None):
        pads = list(node.attrs.get("pads", [0] * (2 * nd)))
        if len(pads) != 2 * nd:
            fail(node, f"pads {pads} do not match {nd} spatial dims")
        return pads
    if auto == "VALID":
        return [0] * (2 * nd)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            out = -(-in_spatial[i] // strides[i])
            eff = (k_spatial[i] - 1) * dilations[i] + 1
            total = max(0, (out - 1) * strides[i] + eff - in_spatial[i])
            small, big = total // 2, total - total // 2
            if auto == "SAME_UPPER":
                begin.append(small)
                end.append(big)
            else:
                begin.append(big)
                end.append(small)
        return begin + end
    fail(node, f"auto_pad {auto!r} is not supported")


@register("Conv")
def conv(node, inputs, opset):
    """N-d grouped convolution by im2col: x [N, C, *S], w [M, C/g, *K], b [M]."""
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    if x.ndim < 3:
        fail(node, f"input of rank {x.ndim}; Conv needs [N, C, spatial...]")
    nd = x.ndim - 2
    group = int(node.attrs.get("group", 1))
    k_spatial = list(w.shape[2:])
    strides = list(node.attrs.get("strides", [1] * nd))
    dilations = list(node.attrs.get("dilations", [1] * nd))
    pads = _conv_pads(node, x.shape[2:], k_spatial, strides, dilations)
    n, c = x.shape[:2]
    m = w.shape[0]
    if c % group or m % group or w.shape[1] != c // group:
        fail(node, f"channels {c}, filters {m} and weight {w.shape} do not fit group={group}")
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    # dilated windows: view [N, C, *out, *K]
    eff = [(k_spatial[i] - 1) * dilations[i] + 1 for i in range(nd)]
    out_sp = [(xp.shape[2 + i] - eff[i]) // strides[i] + 1 for i in range(nd)]
    if any(o <= 0 for o in out_sp):
        fail(node, f"kernel {k_spatial} with dilations {dilations} is larger than the padded input {xp.shape[2:]}")
    check_alloc([n, c, *out_sp, *k_spatial], x.itemsize, what=f"node {node.name!r} (Conv) im2col buffer")
    win = np.lib.stride_tricks.sliding_window_view(xp, eff, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, strides[i]) for i in range(nd))]
    win = win[(Ellipsis,) + tuple(slice(None, None, dilations[i]) for i in range(nd))]
    # win: [N, C, *out, *K] -> groups
    cg, mg = c // group, m // group
    win = win.reshape((n, group, cg) + tuple(out_sp) + tuple(k_spatial))
    wg = w.reshape((group, mg, cg) + tuple(k_spatial))
    letters = "abcdefghij"[:nd]
    kl = "pqrstuvwxy"[:nd]
    eq = f"ngc{letters}{kl},gmc{kl}->ngm{letters}"
    y = np.einsum(eq, win, wg, optimize=True).reshape((n, m) + tuple(out_sp))
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * nd)
    return (y.astype(x.dtype, copy=False),)


@register("Einsum")
def einsum(node, inputs, opset):
    eq = node.attrs.get("equation", "").replace(" ", "")
    return (np.einsum(eq, *inputs, optimize=True).astype(inputs[0].dtype, copy=False),)


@register("Softmax")
def softmax(node, inputs, opset):
    x = inputs[0]
    axis = int(node.attrs.get("axis", -1))
    if x.ndim == 0:
        return (np.ones_like(x),)
    return (_softmax(x, axis).astype(x.dtype, copy=False),)


@register("LogSoftmax")
def log_softmax(node, inputs, opset):
    x = inputs[0]
    axis = int(node.attrs.get("axis", -1))
    m = np.max(x, axis=axis, keepdims=True)
    y = x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return (y.astype(x.dtype, copy=False),)


@register("LayerNormalization")
def layer_norm(node, inputs, opset):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis = int(node.attrs.get("axis", -1))
    eps = float(node.attrs.get("epsilon", 1e-5))
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    stash = int(node.attrs.get("stash_type", 1))
    xc = x.astype(np.float32 if stash == 1 and x.dtype != np.float64 else x.dtype)
    mean = np.mean(xc, axis=axes, keepdims=True)
    d = xc - mean
    var = np.mean(d * d, axis=axes, keepdims=True)
    inv = 1 / np.sqrt(var + np.asarray(eps, xc.dtype))
    y = d * inv * scale
    if bias is not None:
        y = y + bias
    outs = [y.astype(x.dtype, copy=False), mean, inv]
    return tuple(outs[: max(1, len(node.outputs))])


@register("BatchNormalization")
def batch_norm(node, inputs, opset):
    """Inference: normalise with ``mean``/``var``. ``training_mode=1``: with the batch's
    own statistics (over every axis but 1; population variance), and the outputs
    ``running_mean/var = input * momentum + batch * (1 - momentum)``."""
    x, s, b, mean, var = inputs[:5]
    eps = float(node.attrs.get("epsilon", 1e-5))
    sh = (1, -1) + (1,) * (x.ndim - 2)
    if not int(node.attrs.get("training_mode", 0)):
        y = (x - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) * s.reshape(sh) + b.reshape(sh)
        return (y.astype(x.dtype, copy=False),)
    momentum = float(node.attrs.get("momentum", 0.9))
    axes = tuple(a for a in range(x.ndim) if a != 1)
    batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
    y = (x - batch_mean.reshape(sh)) / np.sqrt(batch_var.reshape(sh) + eps) * s.reshape(sh) + b.reshape(sh)
    run_mean = mean * momentum + batch_mean * (1 - momentum)
    run_var = var * momentum + batch_var * (1 - momentum)
    return tuple(a.astype(x.dtype, copy=False) for a in (y, run_mean, run_var))
