"""Single-pass (online) softmax in fixed point: the one definition the hardware mirrors.

Base-2 logits
    The input is multiplied once by ``scale * log2(e)`` (a constant of
    :attr:`SoftmaxSpec.scale_fmt`), so that ``exp(x) = 2**t`` and the exponential is an
    ``exp2``. The product is rounded (round half up, saturate) to the logit format
    :attr:`SoftmaxSpec.logit` (default ``fixed<24,12>``, 12 fraction bits).

exp2 of a non-positive number, :func:`exp2_neg`
    ``2**(-u)`` for a logit-format code ``u >= 0``: ``u`` is rounded to
    :attr:`~SoftmaxSpec.exp_index_bits` fraction bits (``T``, default 8); its integer part
    ``n`` and fraction index ``i`` give ``shift_round(EXP2_TABLE[i], n)``, where
    ``EXP2_TABLE[i] = round(2**(-i / 2**T) * 2**Fp)`` is an unsigned table of ``2**T``
    entries with ``Fp = prob_frac_bits`` (default 16) fraction bits, so ``1.0`` is
    ``2**Fp``. ``n`` is clamped to ``Fp + 2``, which changes nothing (the result is 0
    from there on). Error: relative <= 2**(2**-(T+1)) - 1 (0.136 % at T=8) plus
    2**-(Fp+1) absolute.

Online update, :func:`online_step`
    Running max ``m`` (logit code, starts at the logit format's most negative code),
    running sum ``l`` (``Fp`` fraction bits, starts at 0). Per element ``t``, in index
    order: ``d = exp2_neg(|t - m|)``; if ``t > m`` the old state is rescaled by
    ``a = d`` and the new term is ``b = 1.0``, otherwise ``a = 1.0`` and ``b = d``;
    ``l = shift_round(l * a, Fp) + b``; ``m = max(m, t)``. (Attention rescales its
    ``x V`` accumulator by the same ``a`` and adds ``b * v``.) Because the maximum
    contributes exactly 1.0, ``l >= 1.0`` at the end.

Normalisation, :func:`reciprocal`
    ``r = round(2**(Fp + Fr) / l)`` with ``Fr = recip_frac_bits`` (default 24): ``1/l``
    with ``Fr`` fraction bits, round half up; the probabilities are
    ``requantize(exp2_neg(m - t) * r, Fp + Fr, out_fmt)``.

All integers are exact (wide intermediates are Python ints in numpy object arrays); every
rounding is :func:`hwgen.fixedpoint.shift_round` and every saturation
:func:`hwgen.fixedpoint.saturate` (:func:`wide_shift_round` and :func:`wide_requantize`
are the same functions, forcing Python ints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..fixedpoint import FixedFormat, exact_mul, requantize, shift_round, to_fixed

__all__ = [
    "SoftmaxSpec",
    "SOFTMAX_DEFAULT",
    "LOG2E",
    "exp2_table",
    "exp2_neg",
    "online_step",
    "reciprocal",
    "scale_code",
    "logits",
    "softmax_codes",
    "wide_shift_round",
    "wide_requantize",
]

LOG2E = 1.0 / math.log(2.0)


@dataclass(frozen=True)
class SoftmaxSpec:
    """Formats of the fixed-point softmax (and of attention's softmax).

    Members
    -------
    logit : FixedFormat
        Base-2 logits ``x * scale * log2(e)``.
    scale_fmt : FixedFormat
        The constant ``scale * log2(e)``.
    exp_index_bits : int
        Fraction bits of the exp2 table index; the table has ``2**exp_index_bits`` entries.
    prob_frac_bits : int
        Fraction bits of exp2 results, of the running sum and of the rescale factors
        (unsigned; 1.0 is ``2**prob_frac_bits``).
    recip_frac_bits : int
        Fraction bits of the reciprocal of the sum.
    """

    logit: FixedFormat = FixedFormat(24, 12)
    scale_fmt: FixedFormat = FixedFormat(20, 4)
    exp_index_bits: int = 8
    prob_frac_bits: int = 16
    recip_frac_bits: int = 24

    def __post_init__(self) -> None:
        if not 1 <= self.exp_index_bits <= self.logit.frac_bits:
            raise ValueError(
                f"exp_index_bits must be in 1..{self.logit.frac_bits} (the logit's fraction bits), "
                f"not {self.exp_index_bits}"
            )
        if not 1 <= self.prob_frac_bits <= 30:
            raise ValueError(f"prob_frac_bits must be in 1..30, not {self.prob_frac_bits}")
        if not 1 <= self.recip_frac_bits <= 40:
            raise ValueError(f"recip_frac_bits must be in 1..40, not {self.recip_frac_bits}")

    @property
    def one(self) -> int:
        """The code of 1.0 in the exp2 / sum format."""
        return 1 << self.prob_frac_bits


SOFTMAX_DEFAULT = SoftmaxSpec()


def wide_shift_round(q, shift: int):
    """:func:`~hwgen.fixedpoint.shift_round` on Python ints (an object array out)."""
    return shift_round(np.asarray(q, dtype=object), shift)


def wide_requantize(q, from_frac_bits: int, fmt: FixedFormat) -> np.ndarray:
    """:func:`~hwgen.fixedpoint.requantize` of Python ints; returns int64."""
    return requantize(np.asarray(q, dtype=object), from_frac_bits, fmt)


@lru_cache(maxsize=None)
def _table(index_bits: int, frac_bits: int) -> tuple[int, ...]:
    i = np.arange(1 << index_bits, dtype=np.float64)
    return tuple(int(x) for x in np.floor(np.exp2(-i / (1 << index_bits)) * (1 << frac_bits) + 0.5))


def exp2_table(spec: SoftmaxSpec = SOFTMAX_DEFAULT) -> np.ndarray:
    """``EXP2_TABLE[i] = round(2**(-i / 2**T) * 2**Fp)``, int64, ``2**T`` entries."""
    return np.array(_table(spec.exp_index_bits, spec.prob_frac_bits), dtype=np.int64)


def exp2_neg(u, spec: SoftmaxSpec = SOFTMAX_DEFAULT) -> np.ndarray:
    """``2**(-u)`` for logit codes ``u >= 0``, as unsigned codes with ``Fp`` fraction bits."""
    u = np.asarray(u, dtype=np.int64)
    if np.any(u < 0):
        raise ValueError("exp2_neg takes non-negative arguments")
    t = spec.exp_index_bits
    ur = shift_round(u, spec.logit.frac_bits - t)
    n = np.minimum(ur >> t, spec.prob_frac_bits + 2)
    idx = ur & ((1 << t) - 1)
    return shift_round(exp2_table(spec)[idx], n)


def online_step(m, l, t, spec: SoftmaxSpec = SOFTMAX_DEFAULT):
    """One element of the online softmax: returns ``(m, l, a, b)`` after element ``t``.

    ``a`` rescales the old state and ``b`` weighs the new element (one of them is 1.0).
    """
    m = np.asarray(m, dtype=np.int64)
    t = np.asarray(t, dtype=np.int64)
    d = exp2_neg(np.abs(t - m), spec)
    gt = t > m
    a = np.where(gt, d, spec.one)
    b = np.where(gt, spec.one, d)
    l = shift_round(exact_mul(l, a), spec.prob_frac_bits) + b
    return np.maximum(m, t), l, a, b


def reciprocal(l, spec: SoftmaxSpec = SOFTMAX_DEFAULT) -> np.ndarray:
    """``round(2**(Fp + Fr) / l)`` (round half up) for sums ``l >= 1``; int64 (Python
    ints if a reciprocal needs more than 63 bits)."""
    l = np.asarray(l, dtype=np.int64)
    if np.any(l < 1):
        raise ValueError("reciprocal of a sum below one LSB")
    num = 1 << (spec.prob_frac_bits + spec.recip_frac_bits + 1)
    if num.bit_length() <= 62 and (l.size == 0 or int(l.max()).bit_length() <= 61):
        return (np.int64(num) + l) // (2 * l)
    r = np.asarray((num + l.astype(object)) // (2 * l.astype(object)), dtype=object)
    return r.astype(np.int64) if r.size == 0 or max(abs(int(v)) for v in r.reshape(-1)).bit_length() <= 62 else r


def scale_code(scale: float, spec: SoftmaxSpec = SOFTMAX_DEFAULT) -> int:
    """The code of ``scale * log2(e)`` in ``spec.scale_fmt``; ValueError if out of range."""
    x = float(scale) * LOG2E
    fmt = spec.scale_fmt
    if not math.isfinite(x) or not fmt.min_value <= x <= fmt.max_value:
        raise ValueError(
            f"softmax scale {scale!r} (x log2 e = {x:.6g}) is outside {fmt}'s range "
            f"[{fmt.min_value:.6g}, {fmt.max_value:.6g}]"
        )
    return int(to_fixed(x, fmt))


def logits(x_codes, x_frac_bits: int, scale: float = 1.0, spec: SoftmaxSpec = SOFTMAX_DEFAULT) -> np.ndarray:
    """Base-2 logit codes ``requantize(x * scale_code, Fx + Fs, logit)`` (exact product)."""
    prod = np.asarray(x_codes, dtype=object) * scale_code(scale, spec)
    return wide_requantize(prod, x_frac_bits + spec.scale_fmt.frac_bits, spec.logit)


def softmax_codes(
    x_codes,
    x_frac_bits: int,
    out_fmt: FixedFormat,
    *,
    axis: int = -1,
    scale: float = 1.0,
    spec: SoftmaxSpec = SOFTMAX_DEFAULT,
) -> np.ndarray:
    """Softmax of integer codes along ``axis``: online pass over the elements in index
    order for ``(m, l)``, then ``requantize(exp2_neg(m - t) * reciprocal(l), Fp + Fr, out_fmt)``.
    """
    t = np.moveaxis(logits(x_codes, x_frac_bits, scale, spec), axis, -1)
    m = np.full(t.shape[:-1], spec.logit.qmin, dtype=np.int64)
    l = np.zeros(t.shape[:-1], dtype=np.int64)
    for j in range(t.shape[-1]):
        m, l, _, _ = online_step(m, l, t[..., j], spec)
    r = reciprocal(l, spec)
    p = exact_mul(exp2_neg(m[..., None] - t, spec), r[..., None])
    out = requantize(p, spec.prob_frac_bits + spec.recip_frac_bits, out_fmt)
    return np.moveaxis(out, -1, axis)
