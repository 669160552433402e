"""Residual add unit: one saturating fixed-point sum per beat.

Mirrors :func:`hwgen.numerics.residual.residual_codes` bit for bit.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat

from .softmax import requantize_hw

__all__ = ["ResidualAdd"]


class ResidualAdd(wiring.Component):
    """``o = saturate(round(a + b))`` for ``lanes`` elements per beat.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    a_fmt, b_fmt, out_fmt : FixedFormat
        Formats of the two operands and of the result.

    Members
    -------
    i : In(stream.Signature(StructLayout({"a": ArrayLayout(signed(Wa), lanes), "b": ...})))
        Operand pairs.
    o : Out(stream.Signature(ArrayLayout(signed(Wo), lanes)))
        Sums, one register stage after ``i``.
    """

    def __init__(self, lanes: int = 1, a_fmt: FixedFormat = ACT_DEFAULT, b_fmt: FixedFormat = ACT_DEFAULT,
                 out_fmt: FixedFormat = ACT_DEFAULT):
        if not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        for name, f in (("a_fmt", a_fmt), ("b_fmt", b_fmt), ("out_fmt", out_fmt)):
            if not isinstance(f, FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, not {f!r}")
        self.lanes, self.a_fmt, self.b_fmt, self.out_fmt = lanes, a_fmt, b_fmt, out_fmt
        in_layout = data.StructLayout({
            "a": data.ArrayLayout(signed(a_fmt.width), lanes),
            "b": data.ArrayLayout(signed(b_fmt.width), lanes),
        })
        super().__init__({
            "i": In(stream.Signature(in_layout)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        frac = max(self.a_fmt.frac_bits, self.b_fmt.frac_bits)
        # one register stage: take a beat when the output is empty or being taken
        take = self.i.valid & (~self.o.valid | self.o.ready)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += self.o.valid.eq(1)
            for k in range(self.lanes):
                a = self.i.payload.a[k] << (frac - self.a_fmt.frac_bits)
                b = self.i.payload.b[k] << (frac - self.b_fmt.frac_bits)
                m.d.sync += self.o.payload[k].eq(requantize_hw(a + b, frac, self.out_fmt))
        return m
