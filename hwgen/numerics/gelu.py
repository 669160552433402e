"""GELU as Edge-MoE computes it: ``GELU(x) = ReLU(x) - delta(|x|)``.

``delta(a) = a * Phi(-a)`` (the same for ``x`` and ``-x``) comes from a table of
``TABLE_ENTRIES = 177`` entries at step ``1/32`` over ``[0, 5.5]``, with linear
interpolation between entries and ``delta = 0`` from ``5.5`` on (GELU is ReLU there).

Bit-level algorithm (mirrored by :class:`fpga.hdl.gelu.GeluUnit`), for a code ``x`` of
``in_fmt`` with ``F`` fraction bits:

1. ``a = |x|`` (unsigned, one bit wider than ``x``, so the most negative code works);
2. split ``a``: ``fb = max(F - 5, 0)`` fraction bits ``fr = a mod 2**fb`` and the index
   ``idx = (a << max(5 - F, 0)) >> fb`` (``a`` in units of 1/32, truncated);
3. if ``idx >= 176``: ``d = 0``; else
   ``d = T[idx] * 2**fb + (T[idx+1] - T[idx]) * fr`` with ``TABLE_FRAC_BITS + fb``
   fraction bits, where ``T[k] = floor(delta(k/32) * 2**TABLE_FRAC_BITS + 1/2)``
   (unsigned, ``TABLE_FRAC_BITS = 16``; the largest entry is 11,139 < 2**14);
4. ``r = max(x, 0) << (TABLE_FRAC_BITS + fb - F)`` (exact);
5. result ``requantize(r - d, TABLE_FRAC_BITS + fb, out_fmt)``: one rounding (half up)
   and saturation.
"""

from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import FixedFormat, requantize, shift_round

__all__ = ["TABLE_ENTRIES", "TABLE_STEP_BITS", "TABLE_FRAC_BITS", "delta_table", "split_abs", "gelu_codes"]

TABLE_ENTRIES = 177
#: step 2**-5 = 1/32
TABLE_STEP_BITS = 5
TABLE_FRAC_BITS = 16
_LAST = TABLE_ENTRIES - 1  # index 176 is 5.5


def delta_table() -> np.ndarray:
    """``T[k] = round_half_up(delta(k/32) * 2**16)``, ``delta(a) = a*Phi(-a)``; int64."""
    vals = []
    for k in range(TABLE_ENTRIES):
        a = k / 32
        delta = a * 0.5 * math.erfc(a / math.sqrt(2))
        vals.append(math.floor(delta * 2**TABLE_FRAC_BITS + 0.5))
    return np.array(vals, dtype=np.int64)


_TABLE = delta_table()


def split_abs(a: np.ndarray, frac_bits: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``|x|`` codes with ``frac_bits`` fraction bits -> ``(idx, fr, fb)`` (step 2)."""
    fb = max(frac_bits - TABLE_STEP_BITS, 0)
    up = max(TABLE_STEP_BITS - frac_bits, 0)
    a = np.asarray(a, dtype=np.int64)
    return (a << up) >> fb, a & ((1 << fb) - 1), fb


def gelu_codes(x: np.ndarray, in_fmt: FixedFormat, out_fmt: FixedFormat) -> np.ndarray:
    """GELU of codes ``x`` of ``in_fmt`` -> codes of ``out_fmt`` (int64)."""
    x = np.asarray(x, dtype=np.int64)
    f = in_fmt.frac_bits
    if f > 40 or in_fmt.width - in_fmt.int_bits < -20:
        raise ValueError(f"GELU: input format {in_fmt} has too many fraction bits for int64 arithmetic")
    idx, fr, fb = split_abs(np.abs(x), f)
    inside = idx < _LAST
    i0 = np.where(inside, idx, 0)
    t0, t1 = _TABLE[i0], _TABLE[i0 + 1]
    d = np.where(inside, (t0 << fb) + (t1 - t0) * fr, 0)
    shift = TABLE_FRAC_BITS + fb - f
    r = shift_round(np.maximum(x, 0), -shift)  # an exact left shift (wide formats: Python ints)
    return requantize(r - d, TABLE_FRAC_BITS + fb, out_fmt)
