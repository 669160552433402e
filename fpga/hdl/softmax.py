"""Amaranth mirrors of hwgen's fixed-point softmax arithmetic (:mod:`hwgen.numerics.softmax`).

Combinational helpers shared by the attention and MoE units. Each builds the same
integer function as its namesake in hwgen, bit for bit:

* :func:`shift_round_hw` — ``shift_round`` (round half up, arithmetic shift);
* :func:`requantize_hw` — ``requantize`` (round, then saturate to a format);
* :func:`exp2_neg_hw` — ``exp2_neg`` (``2**T``-entry table of ``2**-f``, then a
  rounding right shift by the integer part, clamped at ``Fp + 2``);
* :func:`online_step_hw` — ``online_step`` (running max and sum, rescale factors);
* :func:`reciprocal_divider` and :func:`reciprocal_operands_hw` — ``reciprocal``
  (``round(2**(Fp+Fr) / l)`` = ``(2**(Fp+Fr+1) + l) // (2 l)``) on a pipelined divider
  (:class:`fpga.hdl.divider.PipelinedDivider`, ``latency`` cycles, one a cycle).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned

from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.softmax import SoftmaxSpec, exp2_table

from .divider import STEPS_PER_STAGE, PipelinedDivider
from .unit_timing import reciprocal_latency, reciprocal_quotient_bits

__all__ = ["shift_round_hw", "saturate_hw", "requantize_hw", "exp2_neg_hw", "online_step_hw", "reciprocal_divider",
           "reciprocal_operands_hw", "reciprocal_latency"]


def shift_round_hw(x: Value, shift: int) -> Value:
    """``(x + 2**(shift-1)) >> shift`` (arithmetic for signed ``x``); ``x << -shift`` if ``shift <= 0``."""
    if shift <= 0:
        return x << -shift
    return (x + (1 << (shift - 1))) >> shift


def saturate_hw(x: Value, fmt: FixedFormat) -> Value:
    """Clamp to ``fmt``'s codes; the result has shape ``signed(fmt.width)``."""
    clamped = Mux(x > fmt.qmax, fmt.qmax, Mux(x < fmt.qmin, fmt.qmin, x))
    return clamped.as_signed()[: fmt.width].as_signed()


def requantize_hw(x: Value, from_frac_bits: int, fmt: FixedFormat) -> Value:
    """``requantize``: round half up to ``fmt.frac_bits`` fraction bits, then saturate."""
    return saturate_hw(shift_round_hw(x, from_frac_bits - fmt.frac_bits), fmt)


def exp2_neg_hw(m: Module, u: Value, spec: SoftmaxSpec, name: str = "exp2") -> Signal:
    """``2**(-u)`` for an unsigned logit-format code ``u``; unsigned, ``Fp`` fraction bits."""
    t = spec.exp_index_bits
    fp = spec.prob_frac_bits
    ur = Signal(len(u) + 1, name=f"{name}_ur")
    m.d.comb += ur.eq(shift_round_hw(u, spec.logit.frac_bits - t))
    n_raw = ur >> t
    n = Signal(range(fp + 3), name=f"{name}_n")
    m.d.comb += n.eq(Mux(n_raw > fp + 2, fp + 2, n_raw))
    table = Array(Const(int(x), unsigned(fp + 1)) for x in exp2_table(spec))
    entry = Signal(unsigned(fp + 1), name=f"{name}_entry")
    m.d.comb += entry.eq(table[ur[:t]])
    half = (Const(1, unsigned(1)) << n) >> 1
    out = Signal(unsigned(fp + 1), name=f"{name}_out")
    m.d.comb += out.eq((entry + half) >> n)
    return out


def online_step_hw(m: Module, run_max: Value, t: Value, spec: SoftmaxSpec, name: str = "step"):
    """Rescale factors of one online-softmax step: ``(new_max, a, b)`` (``a`` for the old
    state, ``b`` for the new element), as in ``online_step``."""
    diff = Signal(signed(spec.logit.width + 1), name=f"{name}_diff")
    m.d.comb += diff.eq(t - run_max)
    gt = Signal(name=f"{name}_gt")
    m.d.comb += gt.eq(diff > 0)
    mag = Signal(unsigned(spec.logit.width + 1), name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(diff < 0, -diff, diff))
    d = exp2_neg_hw(m, mag, spec, name=f"{name}_exp2")
    one = Const(spec.one, unsigned(spec.prob_frac_bits + 1))
    a = Signal(unsigned(spec.prob_frac_bits + 1), name=f"{name}_a")
    b = Signal(unsigned(spec.prob_frac_bits + 1), name=f"{name}_b")
    new_max = Signal(signed(spec.logit.width), name=f"{name}_max")
    m.d.comb += [a.eq(Mux(gt, d, one)), b.eq(Mux(gt, one, d)), new_max.eq(Mux(gt, t, run_max))]
    return new_max, a, b


def reciprocal_divider(spec: SoftmaxSpec, sum_bits: int, min_sum: int | None = None, *, count: int = 1,
                       tag_shape=unsigned(0), steps_per_stage: int = STEPS_PER_STAGE) -> PipelinedDivider:
    """A divider sized for ``reciprocal`` of sums ``min_sum <= l < 2**sum_bits``.

    Feed it :func:`reciprocal_operands_hw`; its quotient is ``reciprocal(l, spec)``, bit
    for bit. ``min_sum`` defaults to ``spec.one``: a softmax sum is never below one,
    because the running maximum's own term is exactly ``exp2(0) = 1.0`` and later
    rescales (by ``a < 1``) come only with a new maximum whose term is again 1.0. The
    quotient then has ``Fr + 1`` bits (``min_sum = 1`` needs ``Fp + Fr + 1``).
    """
    min_sum = spec.one if min_sum is None else min_sum
    if not isinstance(min_sum, int) or not 1 <= min_sum < 1 << sum_bits:
        raise ValueError(f"min_sum must be an integer in [1, 2**{sum_bits}), not {min_sum!r}")
    num = 1 << (spec.prob_frac_bits + spec.recip_frac_bits + 1)
    dividend_bits = (num + (1 << sum_bits) - 1).bit_length()
    return PipelinedDivider(dividend_bits, sum_bits + 1, reciprocal_quotient_bits(spec, min_sum), count=count,
                            tag_shape=tag_shape, steps_per_stage=steps_per_stage)


def reciprocal_operands_hw(l: Value, spec: SoftmaxSpec) -> tuple[Value, Value]:
    """``(2**(Fp+Fr+1) + l, 2 l)``: the dividend and divisor of ``reciprocal(l)``."""
    num_bits = spec.prob_frac_bits + spec.recip_frac_bits + 1
    return Const(1 << num_bits, unsigned(num_bits + 1)) + l, l << 1
