"""ONNX ``Attention`` (versions 23, 24, 25): what torch's ``scaled_dot_product_attention``
exports to, and the attention op of LLM decoders.

Inputs ``Q, K, V[, attn_mask[, past_key, past_value[, nonpad_kv_seqlen]]]``, outputs
``Y[, present_key, present_value[, qk_matmul_output]]``. Q is 4-D ``[B, Hq, Sq, D]`` or
3-D ``[B, Sq, Hq*D]`` (then ``q_num_heads``/``kv_num_heads`` give the heads). Per the
spec::

    Qs, Ks = Q * sqrt(scale), K * sqrt(scale)           (scale: default 1/sqrt(D))
    K, V   = concat(past, K / V) along the sequence      (present_key / present_value)
    s      = softcap(Qs @ Ks^T)                          (softcap * tanh(s / softcap))
    bias   = attn_mask (bool: 0 / -inf; shorter masks padded with -inf)
             + causal (key j <= i + offset) + window (offset + i - left <= j <= ... + right)
             + padding (key j < nonpad_kv_seqlen[b])
    Y      = softmax(s + bias) @ V, a row whose bias is all -inf gives 0

with ``offset`` = past length (internal cache), ``nonpad_kv_seqlen - Sq`` per batch
(external cache) or 0; grouped-query attention repeats each kv head ``Hq / Hkv`` times.
``qk_matmul_output`` is ``s`` before softcap (mode 0), after it (1), with the bias (2),
or the probabilities (3). ``softmax_precision`` float/float16/double is honoured;
bfloat16 is refused.
"""

from __future__ import annotations

import numpy as np

from .ops._util import fail
from .registry import register
from .functions import softmax

__all__ = ["onnx_attention"]

_SOFTMAX_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def _heads_first(x: np.ndarray, heads: int, node, what: str) -> np.ndarray:
    b, s, hd = x.shape
    if heads <= 0 or hd % heads:
        fail(node, f"{what} hidden size {hd} is not a multiple of {heads} heads")
    return x.reshape(b, s, heads, hd // heads).transpose(0, 2, 1, 3)


def _allowed_band(sq: int, sk: int, offset, left: int, right: int, causal: bool) -> np.ndarray:
    """Boolean [Sq, Sk] or [B, 1, Sq, Sk]: keys a query may see by position."""
    i = np.arange(sq).reshape(sq, 1)
    j = np.arange(sk).reshape(1, sk)
    off = np.asarray(offset, dtype=np.int64)
    if off.ndim:
        i = i[None] + off.reshape(-1, 1, 1)  # [B, Sq, 1]
    else:
        i = i + int(off)
    ok = np.ones(np.broadcast_shapes(i.shape, j.shape), dtype=bool)
    if causal:
        ok &= j <= i
    if left >= 0:
        ok &= i - j <= left
    if right >= 0:
        ok &= j - i <= right
    return ok[:, None] if off.ndim else ok


@register("Attention")
def onnx_attention(node, inputs, opset):
    inputs = list(inputs) + [None] * (7 - len(inputs))
    q, k, v, mask, past_k, past_v, nonpad = inputs[:7]
    a = node.attrs
    if (past_k is None) != (past_v is None):
        fail(node, "past_key and past_value must be given together")
    if nonpad is not None and past_k is not None:
        fail(node, "nonpad_kv_seqlen cannot be combined with past_key/past_value")
    if q.ndim != k.ndim or q.ndim != v.ndim or q.ndim not in (3, 4):
        fail(node, f"Q, K, V must all be 3-D or all 4-D, not ranks {q.ndim}, {k.ndim}, {v.ndim}")
    left, right = int(a.get("left_window_size", -1)), int(a.get("right_window_size", -1))
    if left < -1 or right < -1:
        fail(node, f"window sizes must be -1 or >= 0, not ({left}, {right})")
    precision = a.get("softmax_precision")
    if precision is not None and int(precision) not in _SOFTMAX_TYPES:
        fail(node, f"softmax_precision {precision} (bfloat16) is not supported")
    mode = int(a.get("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        fail(node, f"qk_matmul_output_mode {mode} is not one of 0, 1, 2, 3")
    three_d = q.ndim == 3
    if three_d:
        hq, hkv = int(a.get("q_num_heads", 0)), int(a.get("kv_num_heads", 0))
        if hq <= 0 or hkv <= 0:
            fail(node, "3-D inputs need q_num_heads and kv_num_heads")
        q, k, v = _heads_first(q, hq, node, "Q"), _heads_first(k, hkv, node, "K"), _heads_first(v, hkv, node, "V")
    dtype = q.dtype
    scale = a.get("scale")
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else float(scale)
    root = dtype.type(np.sqrt(scale))
    if past_k is not None:
        k, v = np.concatenate([past_k, k], axis=2), np.concatenate([past_v, v], axis=2)
    present = (k, v)
    sq, sk = q.shape[2], k.shape[2]
    if q.shape[1] != k.shape[1]:
        if q.shape[1] % k.shape[1]:
            fail(node, f"{q.shape[1]} query heads is not a multiple of {k.shape[1]} kv heads")
        rep = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = np.matmul(q * root, np.swapaxes(k * root, -1, -2))
    qk_out = s
    softcap = float(a.get("softcap", 0.0) or 0.0)
    if softcap > 0:  # before the masks, so that masked scores stay -inf
        s = (softcap * np.tanh(s / softcap)).astype(dtype)
    if mode == 1:
        qk_out = s
    # the additive bias
    bias = np.zeros((sq, sk), dtype=dtype)
    if mask is not None:
        pad = sk - mask.shape[-1]
        if pad < 0:
            fail(node, f"attn_mask covers {mask.shape[-1]} keys, more than the {sk} keys")
        if mask.dtype == np.bool_:
            mask = np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)], constant_values=False)
            mask = np.where(mask, dtype.type(0), dtype.type(-np.inf))
        else:
            mask = np.pad(mask.astype(dtype), [(0, 0)] * (mask.ndim - 1) + [(0, pad)], constant_values=-np.inf)
        bias = bias + mask
    causal = bool(int(a.get("is_causal", 0)))
    if causal or left >= 0 or right >= 0:
        if past_k is not None:
            offset = past_k.shape[2]
        elif nonpad is not None:
            offset = np.asarray(nonpad, np.int64).reshape(-1) - sq
        else:
            offset = 0
        band = _allowed_band(sq, sk, offset, left, right, causal)
        bias = bias + np.where(band, dtype.type(0), dtype.type(-np.inf))
    if nonpad is not None:
        valid = np.arange(sk) < np.asarray(nonpad, np.int64).reshape(-1, 1)
        bias = bias + np.where(valid, dtype.type(0), dtype.type(-np.inf)).reshape(q.shape[0], 1, 1, sk)
    s = s + bias
    if mode == 2:
        qk_out = s
    work = np.dtype(_SOFTMAX_TYPES[int(precision)]) if precision is not None else dtype
    p = softmax(s.astype(work), axis=-1, masked_rows_zero=True)
    dead = np.isneginf(np.max(bias, axis=-1, keepdims=True))  # fully masked rows give 0
    p = np.where(dead, work.type(0), p).astype(dtype)
    if mode == 3:
        qk_out = p
    y = np.matmul(p, v).astype(dtype)
    if three_d:
        b, h, sq_, d = y.shape
        y = y.transpose(0, 2, 1, 3).reshape(b, sq_, h * d)
    return (y,) + present + (np.asarray(qk_out).astype(dtype),)
