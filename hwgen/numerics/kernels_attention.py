"""Fixed-point kernels of ``hwgen.Attention`` and ``Softmax`` for ``interpret(..., numerics="fixed")``.

Arithmetic in :mod:`hwgen.numerics.attention` and :mod:`hwgen.numerics.softmax`.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..fixedpoint import from_fixed, to_fixed
from ..interp.registry import register_fixed
from .attention import attention_codes
from .softmax import softmax_codes

__all__ = ["attention_fixed", "softmax_fixed"]


def _formats(node, in_fmts, out_fmts, n_in):
    for i, f in enumerate(in_fmts[:n_in]):
        if f is None:
            raise UnsupportedOpError(f"node {node.name!r} ({node.op}): input {i} has no fixed-point format")
    if not out_fmts or out_fmts[0] is None:
        raise UnsupportedOpError(f"node {node.name!r} ({node.op}): output has no fixed-point format")
    return in_fmts, out_fmts[0]


@register_fixed("hwgen.Attention")
def attention_fixed(node, inputs, in_fmts, out_fmts, opset):
    q, kT, v = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 else None
    n_in = 4 if bias is not None else 3
    in_fmts, out_fmt = _formats(node, in_fmts, out_fmts, n_in)
    scale = float(node.attrs.get("scale", 1.0))
    try:
        codes = attention_codes(
            to_fixed(q, in_fmts[0]),
            to_fixed(kT, in_fmts[1]),
            to_fixed(v, in_fmts[2]),
            tuple(in_fmts[:3]),
            out_fmt,
            scale=scale,
            bias=None if bias is None else to_fixed(bias, in_fmts[3]),
            bias_fmt=None if bias is None else in_fmts[3],
        )
    except ValueError as e:
        raise UnsupportedOpError(f"node {node.name!r} (hwgen.Attention): {e}") from e
    return (from_fixed(codes, out_fmt),)


@register_fixed("Softmax")
def softmax_fixed(node, inputs, in_fmts, out_fmts, opset):
    (x,) = inputs[:1]
    in_fmts, out_fmt = _formats(node, in_fmts, out_fmts, 1)
    x = np.asarray(x)
    if x.ndim == 0:
        raise UnsupportedOpError(f"node {node.name!r} (Softmax): input is a scalar")
    axis = int(node.attrs.get("axis", -1 if opset >= 13 else 1))
    if not -x.ndim <= axis < x.ndim:
        raise UnsupportedOpError(f"node {node.name!r} (Softmax): axis {axis} out of range for rank {x.ndim}")
    axis %= x.ndim
    codes = to_fixed(x, in_fmts[0])
    shape = codes.shape
    if opset < 13:  # opset 1-12: softmax over the flattened trailing dims from `axis`
        codes = codes.reshape(int(np.prod(shape[:axis], dtype=np.int64)), -1)
        axis = 1
    if codes.shape[axis] == 0:
        return (from_fixed(codes, out_fmt).reshape(shape),)
    out = softmax_codes(codes, in_fmts[0].frac_bits, out_fmt, axis=axis)
    return (from_fixed(out, out_fmt).reshape(shape),)
