"""Fixed-point formats and the one definition of rounding and saturation.

A value in format ``fixed<W, I>`` (Vivado HLS ``ap_fixed<W, I>`` convention, as in
Edge-MoE) is a signed two's-complement integer ``q`` of ``W`` bits standing for the real
number ``q * 2**-F`` with ``F = W - I`` fraction bits; ``I`` counts the sign bit.

Every conversion that drops fraction bits in hwgen, in the reference interpreter and in
the generated hardware alike, goes through :func:`shift_round`:

* **rounding**: round half up (towards +inf), i.e. ``(q + 2**(s-1)) >> s`` with an
  arithmetic shift. This is the cheapest correct rounding in hardware (one adder) and is
  what the Amaranth units implement.
* **saturation**: results outside the format's range clamp to its most negative /
  most positive code; there is no wrap-around anywhere.

These are the only definitions of the two rules: every kernel of :mod:`hwgen.numerics`
calls :func:`shift_round`, :func:`saturate` and :func:`requantize` (and
:func:`exact_mul` for products that may not fit 63 bits).

Integers are exact at any width: codes are numpy ``int64`` where every value fits, and
numpy object arrays of Python ints where an intermediate needs more than 63 bits (a
wide format shifted left, the product of two 32-bit codes, ...). :func:`shift_round`
and :func:`exact_mul` switch to Python ints by themselves; :func:`saturate` and
:func:`requantize` always return ``int64`` (a format has at most 48 bits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FixedFormat",
    "ACT_DEFAULT",
    "WEIGHT_DEFAULT",
    "shift_round",
    "saturate",
    "exact_mul",
    "to_fixed",
    "from_fixed",
    "quantize",
    "requantize",
]


@dataclass(frozen=True)
class FixedFormat:
    """Signed fixed-point format ``fixed<width, int_bits>``.

    Members
    -------
    width : int
        Total bits, sign included (1..48).
    int_bits : int
        Integer bits, sign included; may be <= 0 or > width for pure-fraction or
        pure-integer-with-scaling formats.
    """

    width: int
    int_bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or not 1 <= self.width <= 48:
            raise ValueError(f"fixed-point width must be an int in 1..48, not {self.width!r}")
        if not isinstance(self.int_bits, int):
            raise ValueError(f"fixed-point int_bits must be an int, not {self.int_bits!r}")

    @property
    def frac_bits(self) -> int:
        """Fraction bits F = width - int_bits."""
        return self.width - self.int_bits

    @property
    def qmin(self) -> int:
        """Most negative integer code."""
        return -(1 << (self.width - 1))

    @property
    def qmax(self) -> int:
        """Most positive integer code."""
        return (1 << (self.width - 1)) - 1

    @property
    def lsb(self) -> float:
        """Value of one least-significant bit, 2**-F."""
        return float(2.0 ** -self.frac_bits)

    @property
    def min_value(self) -> float:
        return self.qmin * self.lsb

    @property
    def max_value(self) -> float:
        return self.qmax * self.lsb

    def __str__(self) -> str:
        return f"fixed<{self.width},{self.int_bits}>"

    @classmethod
    def parse(cls, text: str) -> "FixedFormat":
        """Parse ``"fixed<32,10>"``, ``"32,10"``, ``"int8"`` or ``"int16"``."""
        t = text.strip().lower().replace(" ", "")
        if t in ("int8", "int16", "int32"):
            w = int(t[3:])
            return cls(w, w)
        m = re.fullmatch(r"(?:fixed|ap_fixed)?<?(\d+),(-?\d+)>?", t)
        if not m:
            raise ValueError(
                f"cannot parse fixed-point format {text!r}; write fixed<W,I>, e.g. fixed<32,10>, or int8/int16"
            )
        return cls(int(m.group(1)), int(m.group(2)))


#: Edge-MoE's activation format: fixed<32,10>.
ACT_DEFAULT = FixedFormat(32, 10)
#: Edge-MoE's linear-layer weight format: fixed<16,2>.
WEIGHT_DEFAULT = FixedFormat(16, 2)


_INT64_BITS = 62  # magnitude bits an int64 holds with room for one carry


def _magnitude_bits(q: np.ndarray) -> int:
    """Bits of the largest magnitude in an int64 array (0 for an empty one)."""
    if q.size == 0:
        return 0
    return max(int(q.max()).bit_length(), int(-int(q.min())).bit_length())


def _as_codes(q) -> np.ndarray:
    """int64 array, or an object array of Python ints if ``q`` already is one."""
    if isinstance(q, np.ndarray) and q.dtype == object:
        return q
    if isinstance(q, int) and not -(1 << 63) <= q < (1 << 63):
        return np.asarray(q, dtype=object)
    return np.asarray(q, dtype=np.int64)


def shift_round(q, shift) -> np.ndarray:
    """Drop ``shift`` low bits of integer codes with round-half-up: ``(q + 2**(s-1)) >> s``.

    ``shift <= 0`` multiplies by ``2**-shift`` exactly. ``shift`` may be an int or an
    integer array (one shift per element). The result is exact: ``int64`` if ``q`` is
    and every result fits, else an object array of Python ints (e.g. ``2**46`` shifted
    left by 40 bits).
    """
    q = _as_codes(q)
    if np.ndim(shift) == 0:
        shift = int(shift)
        if q.dtype != object:
            bits = _magnitude_bits(q)
            if (shift <= 0 and bits - shift <= _INT64_BITS) or (0 < shift <= _INT64_BITS and bits <= _INT64_BITS):
                if shift <= 0:
                    return q << np.int64(-shift)
                return (q + np.int64(1 << (shift - 1))) >> np.int64(shift)
            q = q.astype(object)
        if shift <= 0:
            return np.asarray(q * (1 << -shift), dtype=object)
        return np.asarray((q + (1 << (shift - 1))) >> shift, dtype=object)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(-shift, 0)
    right = np.maximum(shift, 0)
    if q.dtype != object and _magnitude_bits(q) + int(left.max(initial=0)) <= _INT64_BITS and int(right.max(initial=0)) <= _INT64_BITS:
        half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
        return ((q << left) + half) >> right
    q, left, right = (np.asarray(a, dtype=object) for a in (q, left, right))
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    return np.asarray(((q << left) + half) >> right, dtype=object)


def saturate(q, fmt: FixedFormat) -> np.ndarray:
    """Clamp integer codes (int64 or Python ints) to the range of ``fmt``. Returns int64."""
    q = _as_codes(q)
    if q.dtype == object:  # (1-d at least: numpy turns 0-d object results into Python ints)
        flat = np.minimum(np.maximum(q.reshape(-1), fmt.qmin), fmt.qmax)
        return np.asarray(flat, dtype=np.int64).reshape(q.shape)
    return np.clip(q, fmt.qmin, fmt.qmax)


def requantize(q, from_frac_bits: int, fmt: FixedFormat) -> np.ndarray:
    """Integer codes with ``from_frac_bits`` fraction bits -> codes of ``fmt``.

    Round half up, then saturate: the one conversion every unit uses. Exact for codes of
    any width (int64 or Python ints); returns int64.
    """
    return saturate(shift_round(q, from_frac_bits - fmt.frac_bits), fmt)


def exact_mul(a, b) -> np.ndarray:
    """Exact elementwise product of integer codes: int64 if both are and it fits 63
    bits, else an object array of Python ints."""
    a, b = _as_codes(a), _as_codes(b)
    if a.dtype != object and b.dtype != object and _magnitude_bits(a) + _magnitude_bits(b) <= _INT64_BITS:
        return a * b
    return np.asarray(np.asarray(a, dtype=object) * np.asarray(b, dtype=object), dtype=object)


def to_fixed(x: np.ndarray | float, fmt: FixedFormat) -> np.ndarray:
    """Real values -> integer codes of ``fmt`` (round half up, saturate). Returns int64.

    NaN maps to 0; +-inf saturate.
    """
    x = np.asarray(x, dtype=np.float64)
    scaled = np.floor(np.nan_to_num(x, nan=0.0) * (2.0 ** fmt.frac_bits) + 0.5)
    scaled = np.clip(scaled, fmt.qmin, fmt.qmax)
    return scaled.astype(np.int64)


def from_fixed(q: np.ndarray | int, fmt: FixedFormat) -> np.ndarray:
    """Integer codes of ``fmt`` -> real values (float64, exact for width <= 53)."""
    return np.asarray(q, dtype=np.int64).astype(np.float64) * (2.0 ** -fmt.frac_bits)


def quantize(x: np.ndarray | float, fmt: FixedFormat) -> np.ndarray:
    """Real values -> the nearest representable values of ``fmt`` (float64)."""
    return from_fixed(to_fixed(x, fmt), fmt)
