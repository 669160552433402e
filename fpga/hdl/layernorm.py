"""LayerNorm unit: one pass over a row (sum and sum of squares), then a bit-serial
reciprocal square root, then the normalised row.

Mirrors :func:`hwgen.numerics.layernorm.layernorm_codes` bit for bit:

* ``ACCUM``: per beat store ``(x, gamma, beta)`` in the row buffer, ``s1 += x``,
  ``s2 += x*x``; on ``last`` the row length ``n`` is known;
* ``VAR``: ``D = max(n*s2 - s1**2 + n*n*e, 1)``;
* ``DIV``: ``q = floor(2**(2R) / D)`` by restoring division, 51 cycles
  (``R = 24 + ceil(bitlen(D)/2)``, so ``q < 2**51``);
* ``SQRT``: ``r = isqrt(q)`` by the restoring square root, 26 cycles;
* ``OUT``: per element ``u = (n*x - s1) * r * gamma + (beta << (R + Fg - Fb))``,
  ``requantize(u, R + Fg, out_fmt)`` — one beat per element, ``last`` on the row's end.
"""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.layernorm import RSQRT_BITS

from .softmax import saturate_hw

__all__ = ["LayerNormUnit", "EPS_BITS", "eps_code"]

#: Width of the run-time ``eps_code`` input.
EPS_BITS = 32

_QBITS = 2 * RSQRT_BITS + 3  # q < 2**51
_SQRT_STEPS = (_QBITS + 1) // 2


def eps_code(eps: float, x_fmt: FixedFormat) -> int:
    """The code of ``eps`` as the variance term sees it (``2 * x_fmt.frac_bits`` fraction bits)."""
    return math.floor(eps * 2.0 ** (2 * x_fmt.frac_bits) + 0.5)


class LayerNormUnit(wiring.Component):
    """LayerNorm of rows of up to ``max_n`` elements.

    Parameters
    ----------
    max_n : int
        Longest row (row buffer depth).
    x_fmt, g_fmt, b_fmt, out_fmt : FixedFormat
        Formats of x, gamma, beta and the output.
    eps : float or None
        ``None`` adds the input ``eps_code`` (unsigned, :data:`EPS_BITS` bits): the code of
        ``eps`` with ``2 * x_fmt.frac_bits`` fraction bits, set at run time (held stable
        while a row is normalised).

    Members
    -------
    i : In(stream.Signature(StructLayout({"x": signed(Wx), "gamma": signed(Wg), "beta": signed(Wb), "last": 1})))
        One element (with its gamma and beta) per beat; ``last`` ends a row.
    o : Out(stream.Signature(StructLayout({"data": signed(Wo), "last": 1})))
        The normalised row, in order.
    """

    def __init__(self, max_n: int = 192, x_fmt: FixedFormat = ACT_DEFAULT, g_fmt: FixedFormat = ACT_DEFAULT,
                 b_fmt: FixedFormat = ACT_DEFAULT, out_fmt: FixedFormat = ACT_DEFAULT, eps: float = 1e-5):
        if not isinstance(max_n, int) or isinstance(max_n, bool) or max_n < 1:
            raise TypeError(f"max_n must be a positive integer, not {max_n!r}")
        for name, f in (("x_fmt", x_fmt), ("g_fmt", g_fmt), ("b_fmt", b_fmt), ("out_fmt", out_fmt)):
            if not isinstance(f, FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, not {f!r}")
        if eps is not None and not eps >= 0:
            raise ValueError(f"eps must be >= 0, not {eps!r}")
        if out_fmt.frac_bits >= RSQRT_BITS + 1 + g_fmt.frac_bits or b_fmt.frac_bits > RSQRT_BITS + 1 + g_fmt.frac_bits:
            raise ValueError(
                f"out_fmt {out_fmt} / b_fmt {b_fmt} have more fraction bits than the normalised product "
                f"({RSQRT_BITS + 1 + g_fmt.frac_bits} at least)"
            )
        self.max_n, self.x_fmt, self.g_fmt, self.b_fmt, self.out_fmt = max_n, x_fmt, g_fmt, b_fmt, out_fmt
        self.eps_const = None if eps is None else eps_code(eps, x_fmt)
        ports = {} if eps is not None else {"eps_code": In(unsigned(EPS_BITS))}
        super().__init__({
            **ports,
            "i": In(stream.Signature(data.StructLayout({
                "x": signed(x_fmt.width), "gamma": signed(g_fmt.width), "beta": signed(b_fmt.width), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"data": signed(out_fmt.width), "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        wx, nb = self.x_fmt.width, self.max_n.bit_length()
        fg, fb, fo = self.g_fmt.frac_bits, self.b_fmt.frac_bits, self.out_fmt.frac_bits
        layout = data.StructLayout({"x": signed(wx), "gamma": signed(self.g_fmt.width), "beta": signed(self.b_fmt.width)})
        m.submodules.row = row = Memory(shape=layout, depth=self.max_n, init=[])
        wp = row.write_port()
        # a synchronous read port (block RAM): in OUT the address runs one element ahead
        rp = row.read_port()

        n = Signal(range(self.max_n + 1))
        idx = Signal(range(self.max_n + 1))
        s1 = Signal(signed(wx + nb + 1))
        s2 = Signal(unsigned(2 * wx + nb))
        eps = self.eps_const if self.eps_const is not None else self.eps_code
        eps_bits = max(self.eps_const.bit_length(), 1) if self.eps_const is not None else EPS_BITS
        d_bits = 2 * wx + 3 * nb + eps_bits + 4
        dd = Signal(unsigned(d_bits))
        big_r = Signal(range(RSQRT_BITS + d_bits + 2))
        rem = Signal(unsigned(d_bits + 2))
        q = Signal(unsigned(_QBITS))
        step = Signal(range(_QBITS + 1))
        root = Signal(unsigned(_QBITS))
        sq_num = Signal(unsigned(_QBITS + 1))
        sq_bit = Signal(unsigned(_QBITS))

        m.d.comb += [wp.addr.eq(idx), wp.data.x.eq(self.i.payload.x), wp.data.gamma.eq(self.i.payload.gamma),
                     wp.data.beta.eq(self.i.payload.beta)]
        m.d.comb += rp.addr.eq(idx)  # row[idx] is on rp.data one cycle later (idx is 0 before OUT)
        with m.FSM():
            with m.State("ACCUM"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.comb += wp.en.eq(1)
                    x = self.i.payload.x
                    m.d.sync += [s1.eq(s1 + x), s2.eq(s2 + x * x)]
                    with m.If(self.i.payload.last | (idx == self.max_n - 1)):
                        m.d.sync += [n.eq(idx + 1), idx.eq(0)]
                        m.next = "VAR"
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)
            with m.State("VAR"):
                v = Signal(signed(d_bits + 2))
                m.d.comb += v.eq(n * s2 - s1 * s1 + n * n * eps)
                m.d.sync += dd.eq(Mux(v < 1, 1, v))
                m.next = "NORM"
            with m.State("NORM"):
                # L = bitlen(D); R = RSQRT_BITS + ceil(L/2); rem = floor(2**(2R) / 2**QBITS)
                length = Signal(range(d_bits + 1))
                for b in range(d_bits):
                    with m.If(dd[b]):
                        m.d.comb += length.eq(b + 1)
                r_val = Signal.like(big_r)
                m.d.comb += r_val.eq(RSQRT_BITS + ((length + 1) >> 1))
                two_r = r_val * 2
                m.d.sync += [big_r.eq(r_val), q.eq(0), step.eq(_QBITS), rem.eq(0)]
                with m.If(two_r >= _QBITS):
                    m.d.sync += rem.bit_select((two_r - _QBITS)[:len(rem).bit_length()], 1).eq(1)
                m.next = "DIV"
            with m.State("DIV"):
                # bit step-1 of the quotient; the numerator's only 1 is at bit 2R
                shifted = Signal(unsigned(d_bits + 3))
                m.d.comb += shifted.eq((rem << 1) | ((big_r * 2) == (step - 1)))
                take = shifted >= dd
                m.d.sync += [rem.eq(Mux(take, shifted - dd, shifted)), q.eq((q << 1) | take), step.eq(step - 1)]
                with m.If(step == 1):
                    m.next = "SQRT0"
            with m.State("SQRT0"):
                m.d.sync += [sq_num.eq(q), root.eq(0), sq_bit.eq(1 << (2 * _SQRT_STEPS - 2)), step.eq(_SQRT_STEPS)]
                m.next = "SQRT"
            with m.State("SQRT"):
                trial = root + sq_bit
                with m.If(sq_num >= trial):
                    m.d.sync += [sq_num.eq(sq_num - trial), root.eq((root >> 1) + sq_bit)]
                with m.Else():
                    m.d.sync += root.eq(root >> 1)
                m.d.sync += [sq_bit.eq(sq_bit >> 2), step.eq(step - 1)]
                with m.If(step == 1):
                    m.next = "OUT"
            with m.State("OUT"):
                e = rp.data
                centred = Signal(signed(wx + 2 * nb + 2))
                m.d.comb += centred.eq(n * e.x - s1)
                u = centred * root[:RSQRT_BITS + 3].as_unsigned() * e.gamma
                frac = Signal(range(2 * (RSQRT_BITS + d_bits) + fg + 2))
                m.d.comb += frac.eq(big_r + fg)
                total = Signal(signed(len(u) + 2 + RSQRT_BITS + d_bits + fg))
                m.d.comb += total.eq(u + (e.beta << (frac - fb).as_unsigned()))
                sh = Signal.like(frac)
                m.d.comb += sh.eq(frac - fo)
                rounded = ((total >> (sh - 1).as_unsigned()) + 1) >> 1  # = (total + 2**(sh-1)) >> sh
                m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(saturate_hw(rounded, self.out_fmt)),
                             self.o.payload.last.eq(idx == n - 1)]
                with m.If(self.o.ready):
                    m.d.comb += rp.addr.eq(idx + 1)
                    with m.If(idx == n - 1):
                        m.d.sync += [idx.eq(0), s1.eq(0), s2.eq(0)]
                        m.next = "ACCUM"
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)
        return m
