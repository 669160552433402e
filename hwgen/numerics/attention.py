"""Fixed-point attention, in the order of operations of ``fpga.hdl.attention``.

For each query row ``q`` and keys ``j = 0, 1, ..., Sk-1`` *in index order*:

1. ``s_j = sum_d q[d] * kT[d, j]``, exact (``Fq + Fk`` fraction bits).
2. ``t_j = requantize(s_j * C + B_j, Fq + Fk + Fs, logit)``: ``C`` is the code of
   ``scale * log2(e)`` (:func:`~hwgen.numerics.softmax.scale_code`), ``B_j`` the optional
   bias code times ``log2(e)``'s code, aligned to the same fraction bits. One rounding.
3. Online softmax step (:func:`~hwgen.numerics.softmax.online_step`) gives ``a, b``;
   the accumulator (``Fv + Fp`` fraction bits, exact width) becomes
   ``acc = shift_round(acc * a, Fp) + b * v[j]``.
4. After the last key, ``r = reciprocal(l)`` and
   ``out = requantize(acc * r, Fv + Fp + Fr, out_fmt)``.

The hardware runs several queries at a time, each delayed by one cycle from the previous
one (skewed), so they finish one per cycle; every query still sees its keys in index
order, so the bits do not depend on how many queries are in flight.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import FixedFormat
from .softmax import (
    SOFTMAX_DEFAULT,
    SoftmaxSpec,
    online_step,
    reciprocal,
    scale_code,
    wide_requantize,
    wide_shift_round,
)

__all__ = ["attention_logits", "attention_codes"]


def attention_logits(
    q,
    kT,
    q_frac_bits: int,
    k_frac_bits: int,
    scale: float = 1.0,
    bias=None,
    bias_frac_bits: int = 0,
    spec: SoftmaxSpec = SOFTMAX_DEFAULT,
) -> np.ndarray:
    """Base-2 logit codes ``t [..., Sq, Sk]`` (steps 1-2), int64."""
    s = np.matmul(np.asarray(q, dtype=object), np.asarray(kT, dtype=object))
    fs = spec.scale_fmt.frac_bits
    frac = q_frac_bits + k_frac_bits + fs
    total = s * scale_code(scale, spec)
    if bias is not None:
        bterm = np.asarray(bias, dtype=object) * scale_code(1.0, spec)
        bfrac = bias_frac_bits + fs
        if bfrac > frac:
            total = total * (1 << (bfrac - frac))
            frac = bfrac
        total = total + bterm * (1 << (frac - bfrac))
    return wide_requantize(total, frac, spec.logit)


def attention_codes(
    q,
    kT,
    v,
    fmts: tuple[FixedFormat, FixedFormat, FixedFormat],
    out_fmt: FixedFormat,
    *,
    scale: float = 1.0,
    bias=None,
    bias_fmt: FixedFormat | None = None,
    spec: SoftmaxSpec = SOFTMAX_DEFAULT,
) -> np.ndarray:
    """Attention on integer codes: ``q [..., Sq, D]``, ``kT [..., D, Sk]``, ``v [..., Sk, Dv]``
    with formats ``fmts = (q_fmt, k_fmt, v_fmt)``; returns ``out_fmt`` codes ``[..., Sq, Dv]``.
    """
    q_fmt, k_fmt, v_fmt = fmts
    q, kT, v = (np.asarray(a, dtype=np.int64) for a in (q, kT, v))
    if kT.shape[-2] != q.shape[-1] or v.shape[-2] != kT.shape[-1]:
        raise ValueError(f"attention shapes do not agree: q {q.shape}, kT {kT.shape}, v {v.shape}")
    if kT.shape[-1] == 0:
        raise ValueError("attention over zero keys")
    t = attention_logits(
        q, kT, q_fmt.frac_bits, k_fmt.frac_bits, scale, bias,
        bias_fmt.frac_bits if bias_fmt is not None else 0, spec,
    )
    batch = np.broadcast_shapes(t.shape[:-1], v.shape[:-2] + (1,))
    m = np.full(batch, spec.logit.qmin, dtype=np.int64)
    l = np.zeros(batch, dtype=np.int64)
    acc = np.zeros(batch + (v.shape[-1],), dtype=object)
    t = np.broadcast_to(t, batch + t.shape[-1:])
    vo = v.astype(object)
    for j in range(t.shape[-1]):
        m, l, a, b = online_step(m, l, t[..., j], spec)
        acc = wide_shift_round(acc * a[..., None].astype(object), spec.prob_frac_bits)
        acc = acc + b[..., None].astype(object) * vo[..., j, None, :]
    r = reciprocal(l, spec)
    frac = v_fmt.frac_bits + spec.prob_frac_bits + spec.recip_frac_bits
    return wide_requantize(acc * r[..., None].astype(object), frac, out_fmt)
