"""LayerNorm over the last axis in one pass (sum of x and of x squared).

Bit-level algorithm (integers of unbounded width: Python ints), for a row of ``N``
codes ``x`` of ``x_fmt`` (``F`` fraction bits):

1. one pass: ``s1 = sum x``, ``s2 = sum x*x`` (exact);
2. ``D = N*s2 - s1**2 + N**2 * e`` where ``e = floor(eps * 2**(2F) + 1/2)``, and
   ``D = max(D, 1)``: ``D / N**2`` is the variance plus eps, in units ``2**-2F``;
   ``(N*x - s1) / sqrt(D)`` is then ``(x - mean) / sqrt(var + eps)`` with no division
   by ``N``;
3. reciprocal square root with ``RSQRT_BITS = 24`` significant bits:
   ``e2 = ceil(bitlen(D) / 2)``, ``R = RSQRT_BITS + e2``,
   ``r = isqrt(floor(2**(2R) / D)) = floor(2**R / sqrt(D))`` — a restoring divider and a
   restoring square root, both bit-serial, are what hardware does for this;
4. ``t = (N*x - s1) * r`` (``R`` fraction bits), ``u = t * gamma`` (``R + Fg``) plus
   ``beta`` aligned to ``R + Fg`` by :func:`~hwgen.fixedpoint.shift_round`;
5. :func:`~hwgen.fixedpoint.requantize` to ``out_fmt``: one rounding, then saturation.
"""

from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import FixedFormat, requantize, shift_round

__all__ = ["RSQRT_BITS", "layernorm_codes", "rsqrt_fixed"]

RSQRT_BITS = 24


def rsqrt_fixed(d: int) -> tuple[int, int]:
    """``(r, R)`` with ``r = floor(2**R / sqrt(d))`` and ``R = RSQRT_BITS + ceil(bitlen(d)/2)``."""
    d = max(int(d), 1)
    big_r = RSQRT_BITS + (d.bit_length() + 1) // 2
    return math.isqrt((1 << (2 * big_r)) // d), big_r


def layernorm_codes(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, x_fmt: FixedFormat,
                    g_fmt: FixedFormat | None, b_fmt: FixedFormat | None, out_fmt: FixedFormat,
                    eps: float = 1e-5) -> np.ndarray:
    """LayerNorm of codes ``x[..., N]`` over the last axis -> codes of ``out_fmt`` (int64).

    ``gamma``/``beta`` are codes of shape ``[N]`` (``None``: 1 and 0).
    """
    x = np.asarray(x, dtype=np.int64)
    n = x.shape[-1]
    f = x_fmt.frac_bits
    if gamma is None:
        g_codes, fg = np.ones(n, dtype=object), 0
    else:
        g_codes, fg = np.asarray(gamma, dtype=np.int64).reshape(n).astype(object), g_fmt.frac_bits
    b_codes = None if beta is None else np.asarray(beta, dtype=np.int64).reshape(n).astype(object)
    e = math.floor(eps * 2.0 ** (2 * f) + 0.5)
    rows = x.reshape(-1, n)
    out = np.empty(rows.shape, dtype=np.int64)
    for i, row in enumerate(rows):
        xs = row.astype(object)  # Python ints: every step below is exact
        s1 = int(xs.sum())
        s2 = int((xs * xs).sum())
        r, big_r = rsqrt_fixed(n * s2 - s1 * s1 + n * n * e)
        frac = big_r + fg
        u = (n * xs - s1) * r * g_codes
        if b_codes is not None:
            u = u + shift_round(b_codes, b_fmt.frac_bits - frac)
        out[i] = requantize(u, frac, out_fmt)
    return out.reshape(x.shape)
