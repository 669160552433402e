"""Linear layers (MatMul, Gemm, Conv as matmul) in the linear unit's integer arithmetic.

Bit-level algorithm (mirrored by :class:`fpga.hdl.linear.LinearUnit`), for activation
codes ``x`` (``x_fmt``, ``Fx`` fraction bits) and weight codes ``w`` (``w_fmt``, ``Fw``):

1. ``acc = sum_k x[m, k] * w[k, n]`` exactly (int64; fraction bits ``Fa = Fx + Fw``).
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

__all__ = ["linear_codes", "accumulator_bits"]


def accumulator_bits(x_fmt: FixedFormat, w_fmt: FixedFormat, k: int) -> int:
    """Bits of a signed accumulator that holds any sum of ``k`` products exactly."""
    return x_fmt.width + w_fmt.width + max(int(k) - 1, 0).bit_length()


def linear_codes(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, x_fmt: FixedFormat, w_fmt: FixedFormat,
                 b_fmt: FixedFormat | None, out_fmt: FixedFormat, gelu: bool = False) -> np.ndarray:
    """``x[..., K] @ w[K, N] + b[N]`` on codes -> codes of ``out_fmt`` (int64)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if accumulator_bits(x_fmt, w_fmt, w.shape[0]) > 63:
        raise ValueError(
            f"linear: a {w.shape[0]}-term sum of {x_fmt} x {w_fmt} products does not fit in int64"
        )
    fa = x_fmt.frac_bits + w_fmt.frac_bits
    acc = np.matmul(x, w)  # int64 matmul: exact (no BLAS for integers)
    if b is not None:
        if b_fmt is None:
            raise ValueError("linear: a bias needs a format")
        acc = acc + shift_round(np.asarray(b, dtype=np.int64), b_fmt.frac_bits - fa)
    y = requantize(acc, fa, out_fmt)
    return gelu_codes(y, out_fmt, out_fmt) if gelu else y
