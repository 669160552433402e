"""ONNX ``Attention`` (opset 23): what torch's ``scaled_dot_product_attention`` exports to.

Inputs ``Q, K, V[, attn_mask[, past_key, past_value]]``; Q is 4-D ``[B, Hq, S, D]`` or
3-D ``[B, S, Hq*D]`` (then ``q_num_heads``/``kv_num_heads`` give the heads). Supported:
scale (default 1/sqrt(D)), boolean or additive mask, ``is_causal``, grouped-query
attention (Hq a multiple of Hkv), ``softcap``. Past key/value caches (decoding) and
``qk_matmul_output_mode`` other than 0 are refused.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from .registry import register

__all__ = ["onnx_attention"]


def _heads_first(x: np.ndarray, heads: int) -> np.ndarray:
    b, s, hd = x.shape
    return x.reshape(b, s, heads, hd // heads).transpose(0, 2, 1, 3)


@register("Attention")
def onnx_attention(node, inputs, opset):
    q, k, v = inputs[:3]
    mask = inputs[3] if len(inputs) > 3 else None
    if len(inputs) > 4 and any(x is not None for x in inputs[4:]):
        raise UnsupportedOpError(f"node {node.name!r} (Attention): past key/value caches are not supported")
    if int(node.attrs.get("left_window_size", -1)) != -1 or int(node.attrs.get("right_window_size", -1)) != -1:
        raise UnsupportedOpError(f"node {node.name!r} (Attention): sliding-window attention is not supported")
    if node.attrs.get("softmax_precision") not in (None, 1):
        raise UnsupportedOpError(f"node {node.name!r} (Attention): softmax_precision other than float is not supported")
    if int(node.attrs.get("qk_matmul_output_mode", 0)) != 0:
        raise UnsupportedOpError(f"node {node.name!r} (Attention): qk_matmul_output_mode != 0 is not supported")
    three_d = q.ndim == 3
    if three_d:
        hq, hkv = int(node.attrs.get("q_num_heads", 0)), int(node.attrs.get("kv_num_heads", 0))
        if hq <= 0 or hkv <= 0:
            raise UnsupportedOpError(f"node {node.name!r} (Attention): 3-D inputs need q_num_heads and kv_num_heads")
        q, k, v = _heads_first(q, hq), _heads_first(k, hkv), _heads_first(v, hkv)
    present = (k, v)  # without a past cache, present_key/value are K and V (4-D)
    if len(node.outputs) > 3 and node.outputs[3]:
        raise UnsupportedOpError(f"node {node.name!r} (Attention): the qk_matmul_output output is not supported")
    if q.shape[1] != k.shape[1]:
        if q.shape[1] % k.shape[1]:
            raise UnsupportedOpError(f"node {node.name!r} (Attention): {q.shape[1]} query heads vs {k.shape[1]} kv heads")
        rep = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    dtype = q.dtype
    scale = node.attrs.get("scale")
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else float(scale)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scale, dtype)
    sq, sk = s.shape[-2], s.shape[-1]
    softcap = float(node.attrs.get("softcap", 0.0) or 0.0)
    if softcap > 0:  # before the masks, so that masked scores stay -inf
        s = softcap * np.tanh(s / softcap)
    if int(node.attrs.get("is_causal", 0)):
        causal = np.tril(np.ones((sq, sk), dtype=bool))  # no cache: top-left aligned
        s = np.where(causal, s, -np.inf)
    if mask is not None:
        if mask.dtype == np.bool_:
            pad = sk - mask.shape[-1]
            m = np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)], constant_values=False) if pad > 0 else mask
            s = np.where(m, s, -np.inf)
        else:
            pad = sk - mask.shape[-1]
            m = np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)], constant_values=-np.inf) if pad > 0 else mask
            s = s + m.astype(dtype)
    mx = np.max(s, axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0)
    e = np.exp(s - mx)
    den = np.sum(e, axis=-1, keepdims=True)
    p = np.where(den > 0, e / np.where(den > 0, den, 1), 0).astype(dtype)
    y = np.matmul(p, v).astype(dtype)
    if three_d:
        b, h, sq_, d = y.shape
        y = y.transpose(0, 2, 1, 3).reshape(b, sq_, h * d)
    return (y,) + present
