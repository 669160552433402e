"""Float semantics of ``hwgen.MoE``: a top-k gated Mixture of Experts of 2-layer MLPs,
plain or gated (SwiGLU / GeGLU).

Inputs (``""`` for an omitted optional one; new optional inputs are only ever appended)::

    0 x       [..., D]        the tokens (every leading axis is a token axis)
    1 gate_w  [D, E]          gate weight (need not be constant: e.g. gathered per task)
    2 gate_b  [E]             optional gate bias (need not be constant: e.g. a task
                              embedding's projection)
    3 w1      [E, D, H]       first-layer weight of each expert
    4 b1      [E, H]          optional
    5 w2      [E, H, Dout]    second-layer weight of each expert
    6 b2      [E, Dout]       optional
    7 w3      [E, D, H]       optional: the gated experts' second projection ("up")
    8 b3      [E, H]          optional (only with w3)

Attributes: ``num_experts`` (E), ``top_k`` (k), ``activation`` (one of
:data:`ACTIVATIONS`) and ``normalization`` (one of :data:`NORMALIZATIONS`).

For every token ``t`` (a row of ``x.reshape(-1, D)``), :func:`route` gives the experts
``sel`` and their weights ``w``::

    l = t @ gate_w + gate_b                                   # [E] logits
    "softmax_then_topk"   (Switch, GShard, DeepSeek-MoE):     p = softmax(l)
                          sel = topk(p, k); w_j = p_sel_j
    "softmax_topk_renorm" (M3ViT, GShard top-2, Qwen3-MoE):   p = softmax(l)
                          sel = topk(p, k); w_j = p_sel_j / sum_i p_sel_i
    "topk_then_softmax"   (Mixtral):                          sel = topk(l, k)
                          w = softmax(l_sel)
    "topk"                (hard routing on raw logits):       sel = topk(l, k); w_j = l_sel_j
    "sigmoid_then_topk"   (sigmoid gates):                    p = sigmoid(l)
                          sel = topk(p, k); w_j = p_sel_j

and the experts (:func:`expert`)::

    plain: expert_e(t) = act(t @ w1[e] + b1[e]) @ w2[e] + b2[e]
    gated: expert_e(t) = (act(t @ w1[e] + b1[e]) * (t @ w3[e] + b3[e])) @ w2[e] + b2[e]
    y_t = sum_{j < k} w_j * expert_{sel_j}(t)

The gated form is Mixtral's, Qwen-MoE's and DeepSeek-MoE's SwiGLU (``activation="silu"``;
their ``gate_proj`` is w1, ``up_proj`` w3, ``down_proj`` w2) and GeGLU
(``activation="gelu"``).

``topk`` orders by value, ties broken by the lower expert index first (ONNX TopK's
rule; ArgMax's first-maximum rule is the same for k = 1). The renormalised and the
Mixtral forms are the same function (softmax is monotonic and
``softmax(l_sel) = p_sel / sum p_sel``); both names are kept so that the fused node
says how the source model was written. Activations: :data:`ACTIVATIONS`
(:func:`hwgen.interp.functions.activation`).

``y`` has shape ``x.shape[:-1] + (Dout,)`` and x's dtype. Experts run only on the tokens
routed to them (the sparse formulation); a dense masked export computes the same
function with every expert on every token.
"""

from __future__ import annotations

import numpy as np

from .functions import ACTIVATIONS, activation, sigmoid, softmax
from .ops._util import fail
from .registry import register

__all__ = ["moe", "moe_reference", "route", "expert", "topk_indices", "ACTIVATIONS", "NORMALIZATIONS", "INPUTS"]

#: Gate normalisations, the ``normalization`` attribute (the fixed-point routing of
#: :mod:`hwgen.numerics.topk` and the hardware's MOE_ROUTE unit take the same names).
NORMALIZATIONS = ("softmax_then_topk", "softmax_topk_renorm", "topk_then_softmax", "topk", "sigmoid_then_topk")
#: Input names in order (optional ones may be ``""``).
INPUTS = ("x", "gate_w", "gate_b", "w1", "b1", "w2", "b2", "w3", "b3")


def topk_indices(v: np.ndarray, k: int) -> np.ndarray:
    """Indices [T, k] of the k largest entries of each row; ties: lower index first."""
    return np.argsort(-v, axis=-1, kind="stable")[:, :k]


def route(logits: np.ndarray, k: int, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """Experts ``sel [T, k]`` (best first) and weights ``w [T, k]`` of gate logits ``[T, E]``."""
    if normalization in ("softmax_then_topk", "softmax_topk_renorm"):
        score = softmax(logits, axis=-1)
    elif normalization == "sigmoid_then_topk":
        score = sigmoid(logits)
    elif normalization in ("topk_then_softmax", "topk"):
        score = logits
    else:
        raise ValueError(f"normalization {normalization!r} is not one of {NORMALIZATIONS}")
    sel = topk_indices(score, k)
    vals = np.take_along_axis(score, sel, axis=-1)
    if normalization == "softmax_topk_renorm":
        return sel, vals / np.sum(vals, axis=-1, keepdims=True)
    if normalization == "topk_then_softmax":
        return sel, softmax(vals, axis=-1)
    return sel, vals


def expert(t: np.ndarray, e: int, w1, b1, w2, b2, act: str, w3=None, b3=None) -> np.ndarray:
    """Expert ``e`` on token rows ``t [N, D]`` (plain, or gated when ``w3`` is given)."""
    h = t @ w1[e]
    if b1 is not None:
        h = h + b1[e]
    h = activation(act, h)
    if w3 is not None:
        up = t @ w3[e]
        if b3 is not None:
            up = up + b3[e]
        h = h * up
    out = h @ w2[e]
    if b2 is not None:
        out = out + b2[e]
    return out


def moe_reference(x, gate_w, gate_b, w1, b1, w2, b2, top_k: int, activation: str, normalization: str, w3=None, b3=None) -> np.ndarray:
    """The function of the module docstring, in numpy (None for an absent input)."""
    dtype = x.dtype
    d = x.shape[-1]
    e_count = w1.shape[0]
    d_out = w2.shape[-1]
    tok = x.reshape(-1, d)
    gate_w, gate_b, w1, b1, w2, b2, w3, b3 = (
        None if a is None else np.asarray(a).astype(dtype, copy=False) for a in (gate_w, gate_b, w1, b1, w2, b2, w3, b3)
    )
    logits = tok @ gate_w
    if gate_b is not None:
        logits = logits + gate_b
    sel, weight = route(logits, top_k, normalization)
    y = np.zeros((tok.shape[0], d_out), dtype=dtype)
    for e in range(e_count):
        rows, slot = np.nonzero(sel == e)
        if rows.size == 0:
            continue
        out = expert(tok[rows], e, w1, b1, w2, b2, activation, w3, b3)
        y[rows] += weight[rows, slot][:, None] * out  # a token picks an expert at most once
    return y.reshape(x.shape[:-1] + (d_out,))


@register("hwgen.MoE")
def moe(node, inputs, opset):
    args = list(inputs) + [None] * (len(INPUTS) - len(inputs))
    x, gate_w, gate_b, w1, b1, w2, b2, w3, b3 = args[: len(INPUTS)]
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
    if gate_w.shape != (x.shape[-1], e_count) or w2.shape[:2] != (e_count, w1.shape[2]) or w1.shape[1] != x.shape[-1]:
        fail(node, f"shapes do not fit: x {x.shape}, gate_w {gate_w.shape}, w1 {w1.shape}, w2 {w2.shape}")
    if gate_b is not None and np.shape(gate_b) != (e_count,):
        fail(node, f"gate_b has shape {np.shape(gate_b)}, not [{e_count}]")
    if w3 is not None and w3.shape != w1.shape:
        fail(node, f"w3 {w3.shape} must have w1's shape {w1.shape}")
    if b3 is not None and w3 is None:
        fail(node, "b3 needs w3 (the gated experts' second projection)")
    if not 1 <= k <= e_count:
        fail(node, f"top_k={k} is outside [1, {e_count}]")
    return (moe_reference(x, gate_w, gate_b, w1, b1, w2, b2, k, act, norm, w3, b3),)
