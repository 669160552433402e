"""Linear layers (MatMul, Gemm, Conv as matmul) in the linear unit's integer arithmetic.

Bit-level algorithm (mirrored by :class:`fpga.hdl.linear.LinearUnit`), for activation
codes ``x`` (``x_fmt``, ``Fx`` fraction bits) and weight codes ``w`` (``w_fmt``, ``Fw``):

1. ``acc = sum_k x[m, k] * w[k, n]`` exactly (fraction bits ``Fa = Fx + Fw``; int64, or
   Python integers via :func:`exact_products` when the sum may need more than 63 bits).
   The order of accumulation (K tiles) does not matter: the sum is exact;
2. bias codes ``b`` (``b_fmt``, ``Fb``) are aligned to ``Fa`` with
   :func:`~hwgen.fixedpoint.shift_round` (exact when ``Fb <= Fa``, the usual case) and
   added;
3. :func:`~hwgen.fixedpoint.requantize` to ``out_fmt`` (round half up, saturate);
4. optional fused GELU: :func:`hwgen.numerics.gelu.gelu_codes` from ``out_fmt`` to
   ``out_fmt`` — the same numbers as a separate linear op followed by a Gelu op.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import FixedFormat, requantize, shift_round
from .gelu import gelu_codes

__all__ = ["linear_codes", "accumulator_bits", "exact_products", "requantize_wide"]


def accumulator_bits(x_fmt: FixedFormat, w_fmt: FixedFormat, k: int) -> int:
    """Bits of a signed accumulator that holds any sum of ``k`` products exactly."""
    return x_fmt.width + w_fmt.width + max(int(k) - 1, 0).bit_length()


def exact_products(fn, x: np.ndarray, w: np.ndarray, x_fmt: FixedFormat, w_fmt: FixedFormat, k: int) -> np.ndarray:
    """``fn(x, w)`` (a bilinear integer map: matmul, conv) computed exactly.

    int64 when ``accumulator_bits(x_fmt, w_fmt, k) <= 63``; otherwise (e.g. two 32-bit
    activations) each operand is split ``v = hi * 2**S + lo`` (``lo`` unsigned, ``S`` half
    its width), the four partial maps run in int64 and are combined in Python integers
    (an object array).
    """
    if accumulator_bits(x_fmt, w_fmt, k) <= 63:
        return fn(x, w)
    sx, sw = (x_fmt.width + 1) // 2, (w_fmt.width + 1) // 2
    xh, xl = x >> np.int64(sx), x & np.int64((1 << sx) - 1)
    wh, wl = w >> np.int64(sw), w & np.int64((1 << sw) - 1)
    parts = [(fn(xh, wh), sx + sw), (fn(xh, wl), sx), (fn(xl, wh), sw), (fn(xl, wl), 0)]
    out = None
    for p, shift in parts:
        term = p.astype(object) * (1 << shift)
        out = term if out is None else out + term
    return out


def requantize_wide(acc: np.ndarray, frac_bits: int, fmt: FixedFormat) -> np.ndarray:
    """:func:`~hwgen.fixedpoint.requantize` (which takes int64 and Python-int arrays alike)."""
    return requantize(acc, frac_bits, fmt)


def linear_codes(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, x_fmt: FixedFormat, w_fmt: FixedFormat,
                 b_fmt: FixedFormat | None, out_fmt: FixedFormat, gelu: bool = False) -> np.ndarray:
    """``x[..., K] @ w[K, N] + b[N]`` on codes -> codes of ``out_fmt`` (int64)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    fa = x_fmt.frac_bits + w_fmt.frac_bits
    acc = exact_products(np.matmul, x, w, x_fmt, w_fmt, w.shape[0])  # exact (no BLAS for integers)
    if b is not None:
        if b_fmt is None:
            raise ValueError("linear: a bias needs a format")
        acc = acc + shift_round(np.asarray(b, dtype=np.int64), b_fmt.frac_bits - fa)
    y = requantize_wide(acc, fa, out_fmt)
    return gelu_codes(y, out_fmt, out_fmt) if gelu else y
