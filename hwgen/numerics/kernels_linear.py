"""Fixed-point kernel of ``hwgen.Linear``: the linear unit's arithmetic, one rounding.

Exact accumulation of code products, the bias aligned to the accumulator and added,
one requantisation (round half up, saturate): :func:`hwgen.numerics.linear.linear_codes`.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..fixedpoint import from_fixed, to_fixed
from ..interp.registry import register_fixed
from .linear import linear_codes

__all__ = ["linear_op_fixed"]


@register_fixed("hwgen.Linear")
def linear_op_fixed(node, inputs, in_fmts, out_fmts, opset):
    n_in = 3 if len(inputs) > 2 and inputs[2] is not None else 2
    for i in range(n_in):
        if in_fmts[i] is None:
            raise UnsupportedOpError(f"node {node.name!r} (hwgen.Linear): input {i} has no fixed-point format")
    if not out_fmts or out_fmts[0] is None:
        raise UnsupportedOpError(f"node {node.name!r} (hwgen.Linear): output has no fixed-point format")
    x = to_fixed(inputs[0], in_fmts[0])
    w = to_fixed(inputs[1], in_fmts[1])
    b = to_fixed(np.asarray(inputs[2]).reshape(-1), in_fmts[2]) if n_in == 3 else None
    y = linear_codes(x, w, b, in_fmts[0], in_fmts[1], in_fmts[2] if n_in == 3 else None, out_fmts[0])
    return (from_fixed(y, out_fmts[0]),)
