"""GELU unit: ``GELU(x) = ReLU(x) - delta(|x|)``, delta from Edge-MoE's 177-entry table.

Mirrors :func:`hwgen.numerics.gelu.gelu_codes` bit for bit (the algorithm is written
there): per lane one absolute value, two table reads (``T[idx]`` and ``T[idx+1]``, two
ROMs so that no adder sits on the address), one multiply for the interpolation and one
rounding. One register stage.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.gelu import TABLE_ENTRIES, TABLE_FRAC_BITS, TABLE_STEP_BITS, delta_table

from .softmax import requantize_hw

__all__ = ["GeluUnit", "gelu_hw"]

_LAST = TABLE_ENTRIES - 1


def gelu_hw(m: Module, x: Value, in_fmt: FixedFormat, out_fmt: FixedFormat, name: str = "gelu") -> Value:
    """Combinational GELU of a ``signed(in_fmt.width)`` code; returns ``signed(out_fmt.width)``."""
    f = in_fmt.frac_bits
    fb = max(f - TABLE_STEP_BITS, 0)
    up = max(TABLE_STEP_BITS - f, 0)
    table = [int(v) for v in delta_table()]
    tw = max(table).bit_length()
    a = Signal(unsigned(in_fmt.width), name=f"{name}_abs")  # |most negative| fits unsigned(W)
    m.d.comb += a.eq(Mux(x < 0, -x, x))
    idx_full = (a << up)[fb:] if fb < in_fmt.width + up else Const(0, 1)
    inside = Signal(name=f"{name}_inside")
    m.d.comb += inside.eq(idx_full < _LAST)
    idx = Signal(range(TABLE_ENTRIES), name=f"{name}_idx")
    m.d.comb += idx.eq(Mux(inside, idx_full, 0))
    rom0 = Array(Const(v, unsigned(tw)) for v in table[:_LAST])
    rom1 = Array(Const(v, unsigned(tw)) for v in table[1:])
    t0 = Signal(unsigned(tw), name=f"{name}_t0")
    t1 = Signal(unsigned(tw), name=f"{name}_t1")
    m.d.comb += [t0.eq(rom0[idx]), t1.eq(rom1[idx])]
    slope = Signal(signed(tw + 1), name=f"{name}_slope")
    m.d.comb += slope.eq(t1 - t0)
    d = Signal(signed(tw + fb + 2), name=f"{name}_delta")
    if fb:
        fr = a[:fb]
        m.d.comb += d.eq(Mux(inside, (t0 << fb) + slope * fr, 0))
    else:
        m.d.comb += d.eq(Mux(inside, t0, 0))
    shift = TABLE_FRAC_BITS + fb - f
    r = Mux(x > 0, x, 0) << shift
    diff = Signal(signed(max(in_fmt.width + shift, tw + fb + 2) + 1), name=f"{name}_diff")
    m.d.comb += diff.eq(r - d)
    return requantize_hw(diff, TABLE_FRAC_BITS + fb, out_fmt)


class GeluUnit(wiring.Component):
    """GELU on ``lanes`` elements per beat.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    in_fmt, out_fmt : FixedFormat
        Formats of input and output codes.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(in_fmt.width), lanes)))
    o : Out(stream.Signature(ArrayLayout(signed(out_fmt.width), lanes)))
        One register stage after ``i``.
    """

    def __init__(self, lanes: int = 1, in_fmt: FixedFormat = ACT_DEFAULT, out_fmt: FixedFormat = ACT_DEFAULT):
        if not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        for name, f in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
            if not isinstance(f, FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, not {f!r}")
        if in_fmt.frac_bits > 40:
            raise ValueError(f"in_fmt {in_fmt} has {in_fmt.frac_bits} fraction bits; at most 40 are supported")
        self.lanes, self.in_fmt, self.out_fmt = lanes, in_fmt, out_fmt
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(in_fmt.width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.o.valid.eq(1)
            for k in range(self.lanes):
                m.d.sync += self.o.payload[k].eq(gelu_hw(m, self.i.payload[k], self.in_fmt, self.out_fmt, f"gelu{k}"))
        return m
