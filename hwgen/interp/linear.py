"""Float semantics of ``hwgen.Linear``: a linear layer with its bias, as the linear unit computes it.

``hwgen.Linear(x, w[, b])`` (domain ``hwgen``)::

    y = x @ w + b          x [..., K], w [K, N] (constant), b [N] (constant, optional)

The float function is exactly ``MatMul`` then ``Add``. The op exists because in fixed
point the two differ: the hardware adds the bias to the exact accumulator and rounds
once (:func:`hwgen.numerics.linear.linear_codes`), while ``MatMul`` then ``Add`` round and
saturate twice. :func:`hwgen.passes.fuse_linear` creates it; its fixed-point kernel is
in :mod:`hwgen.numerics.kernels_linear`.
"""

from __future__ import annotations

import numpy as np

from .ops._util import fail
from .registry import register

__all__ = ["linear"]


@register("hwgen.Linear")
def linear(node, inputs, opset):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    if w is None or np.ndim(w) != 2:
        fail(node, f"needs a [K, N] weight, not shape {None if w is None else np.shape(w)}")
    if np.shape(x)[-1] != np.shape(w)[0]:
        fail(node, f"x {np.shape(x)} and w {np.shape(w)} do not chain")
    y = np.matmul(x, np.asarray(w).astype(x.dtype, copy=False))
    if b is not None:
        if np.size(b) != np.shape(w)[1]:
            fail(node, f"bias of {np.size(b)} values for {np.shape(w)[1]} outputs")
        y = y + np.asarray(b).reshape(-1).astype(x.dtype, copy=False)
    return (y.astype(x.dtype, copy=False),)
