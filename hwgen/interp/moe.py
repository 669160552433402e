"""Float semantics of ``hwgen.MoE``: a top-k gated Mixture of Experts of 2-layer MLPs.

Inputs (``""`` for an omitted optional one)::

    x       [..., D]        the tokens (every leading axis is a token axis)
    gate_w  [D, E]          gate weight (need not be constant: e.g. gathered per task)
    gate_b  [E]             optional gate bias
    w1      [E, D, H]       first-layer weight of each expert
    b1      [E, H]          optional
    w2      [E, H, Dout]    second-layer weight of each expert
    b2      [E, Dout]       optional

Attributes: ``num_experts`` (E), ``top_k`` (k), ``activation`` (one of
:data:`ACTIVATIONS`) and ``normalization`` (one of :data:`NORMALIZATIONS`).

For every token ``t`` (a row of ``x.reshape(-1, D)``)::

    l = t @ gate_w + gate_b                                   # [E] logits
    "softmax_then_topk"   (Switch, GShard, DeepSpeed top-1):  p = softmax(l)
                          sel = topk(p, k); w_j = p_sel_j
    "softmax_topk_renorm" (M3ViT, GShard top-2, DeepSpeed):   p = softmax(l)
                          sel = topk(p, k); w_j = p_sel_j / sum_i p_sel_i
    "topk_then_softmax"   (Mixtral):                          sel = topk(l, k)
                          w = softmax(l_sel)
    "topk"                (hard routing on raw logits):       sel = topk(l, k); w_j = l_sel_j
    "sigmoid_then_topk"   (sigmoid gates):                    p = sigmoid(l)
                          sel = topk(p, k); w_j = p_sel_j
    expert_e(t) = act(t @ w1[e] + b1[e]) @ w2[e] + b2[e]
    y_t = sum_{j < k} w_j * expert_{sel_j}(t)

``topk`` orders by value, ties broken by the lower expert index first (ONNX TopK's
rule; ArgMax's first-maximum rule is the same for k = 1). The renormalised and the
Mixtral forms are the same function (softmax is monotonic and
``softmax(l_sel) = p_sel / sum p_sel``); both names are kept so that the fused node
says how the source model was written. Activations: ``"gelu"`` (erf form), ``"gelu_tanh"``,
``"relu"``, ``"silu"`` (x * sigmoid(x)), ``"identity"``.

``y`` has shape ``x.shape[:-1] + (Dout,)`` and x's dtype. Experts run only on the tokens
routed to them (the sparse formulation); a dense masked export computes the same
function with every expert on every token.
"""

from __future__ import annotations

import math

import numpy as np

from .ops._util import fail
from .registry import register

__all__ = ["moe", "moe_reference", "ACTIVATIONS", "NORMALIZATIONS"]

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "identity")
NORMALIZATIONS = ("softmax_then_topk", "softmax_topk_renorm", "topk_then_softmax", "topk", "sigmoid_then_topk")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _activation(name: str, h: np.ndarray) -> np.ndarray:
    if name == "identity":
        return h
    if name == "relu":
        return np.maximum(h, 0)
    hd = h.astype(np.float64)
    if name == "gelu":
        from .ops.elementwise import _erf

        out = 0.5 * hd * (1 + _erf(hd / math.sqrt(2)))
    elif name == "gelu_tanh":
        out = 0.5 * hd * (1 + np.tanh(math.sqrt(2 / math.pi) * (hd + 0.044715 * hd**3)))
    elif name == "silu":
        out = hd / (1 + np.exp(-hd))
    else:
        raise ValueError(name)
    return out.astype(h.dtype)


def _topk(v: np.ndarray, k: int) -> np.ndarray:
    """Indices [T, k] of the k largest entries of each row; ties: lower index first."""
    return np.argsort(-v, axis=-1, kind="stable")[:, :k]


def moe_reference(x, gate_w, gate_b, w1, b1, w2, b2, top_k: int, activation: str, normalization: str) -> np.ndarray:
    """The function of the module docstring, in numpy (None for an absent bias)."""
    dtype = x.dtype
    d = x.shape[-1]
    e_count = w1.shape[0]
    d_out = w2.shape[-1]
    tok = x.reshape(-1, d)
    gate_w, gate_b, w1, b1, w2, b2 = (None if a is None else np.asarray(a).astype(dtype, copy=False) for a in (gate_w, gate_b, w1, b1, w2, b2))
    logits = tok @ gate_w
    if gate_b is not None:
        logits = logits + gate_b
    if normalization in ("softmax_then_topk", "softmax_topk_renorm"):
        score = _softmax(logits)
    elif normalization == "sigmoid_then_topk":
        score = (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(dtype)
    else:
        score = logits
    sel = _topk(score, top_k)
    vals = np.take_along_axis(score, sel, axis=-1)
    if normalization == "softmax_topk_renorm":
        weight = vals / np.sum(vals, axis=-1, keepdims=True)
    elif normalization == "topk_then_softmax":
        weight = _softmax(vals)
    else:
        weight = vals
    y = np.zeros((tok.shape[0], d_out), dtype=dtype)
    for e in range(e_count):
        rows, slot = np.nonzero(sel == e)
        if rows.size == 0:
            continue
        h = tok[rows] @ w1[e]
        if b1 is not None:
            h = h + b1[e]
        out = _activation(activation, h) @ w2[e]
        if b2 is not None:
            out = out + b2[e]
        y[rows] += weight[rows, slot][:, None] * out  # a token picks an expert at most once
    return y.reshape(x.shape[:-1] + (d_out,))


@register("hwgen.MoE")
def moe(node, inputs, opset):
    x, gate_w = inputs[0], inputs[1]
    rest = list(inputs[2:]) + [None] * (7 - len(inputs))
    gate_b, w1, b1, w2, b2 = rest[:5]
    k = int(node.attrs.get("top_k", 1))
    act = node.attrs.get("activation", "gelu")
    norm = node.attrs.get("normalization", "softmax_then_topk")
    if act not in ACTIVATIONS:
        fail(node, f"activation {act!r} is not one of {ACTIVATIONS}")
    if norm not in NORMALIZATIONS:
        fail(node, f"normalization {norm!r} is not one of {NORMALIZATIONS}")
    if w1 is None or w2 is None or w1.ndim != 3 or w2.ndim != 3 or gate_w.ndim != 2:
        fail(node, "needs gate_w [D, E], w1 [E, D, H] and w2 [E, H, Dout]")
    e_count = w1.shape[0]
    if gate_w.shape != (x.shape[-1], e_count) or w2.shape[:2] != (e_count, w1.shape[2]):
        fail(node, f"shapes do not fit: x {x.shape}, gate_w {gate_w.shape}, w1 {w1.shape}, w2 {w2.shape}")
    if not 1 <= k <= e_count:
        fail(node, f"top_k={k} is outside [1, {e_count}]")
    return (moe_reference(x, gate_w, gate_b, w1, b1, w2, b2, k, act, norm),)
