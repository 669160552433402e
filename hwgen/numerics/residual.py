"""Residual add: the saturating sum of two fixed-point tensors.

Bit-level algorithm (what :class:`fpga.hdl.residual.ResidualAdd` does):

1. align both codes to ``F = max(Fa, Fb)`` fraction bits by shifting left (exact);
2. add exactly (one more bit than the wider operand);
3. :func:`hwgen.fixedpoint.requantize` to the output format: round half up if the
   output has fewer fraction bits, then saturate.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import FixedFormat, requantize, shift_round

__all__ = ["residual_codes"]


def residual_codes(a: np.ndarray, b: np.ndarray, a_fmt: FixedFormat, b_fmt: FixedFormat,
                   out_fmt: FixedFormat) -> np.ndarray:
    """Codes of ``a`` (``a_fmt``) + codes of ``b`` (``b_fmt``) -> codes of ``out_fmt``."""
    frac = max(a_fmt.frac_bits, b_fmt.frac_bits)
    s = shift_round(a, a_fmt.frac_bits - frac) + shift_round(b, b_fmt.frac_bits - frac)
    return requantize(s, frac, out_fmt)
