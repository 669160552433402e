"""Float semantics of hwgen's fused ops (domain ``hwgen``).

``hwgen.Attention(q, kT, v[, bias])``, attributes ``scale`` (float, default 1.0)::

    out = softmax(scale * (q @ kT) + bias, axis=-1) @ v

(a row whose scores are all -inf, i.e. fully masked, gives probabilities 0, not NaN)

with numpy matmul broadcasting: q [..., Sq, D], kT [..., D, Sk], v [..., Sk, Dv].
Multi-head attention is the rank-4 case [B, H, S, D] (``num_heads`` attribute = H,
informational).

``hwgen.MoE`` is defined in :mod:`hwgen.interp.moe`.
"""

from __future__ import annotations

import numpy as np

from .functions import softmax
from .registry import register

__all__ = ["attention"]


@register("hwgen.Attention")
def attention(node, inputs, opset):
    q, kT, v = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 else None
    scale = float(node.attrs.get("scale", 1.0))
    s = np.matmul(q, kT)
    if scale != 1.0:
        s = s * np.asarray(scale, dtype=s.dtype)
    if bias is not None:
        s = s + bias
    return (np.matmul(softmax(s, masked_rows_zero=True), v).astype(q.dtype, copy=False),)
