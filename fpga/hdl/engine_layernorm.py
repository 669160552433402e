"""Engine of LAYERNORM: rows of a matrix through :class:`~fpga.hdl.layernorm.LayerNormUnit`.

Instruction fields: ``src0`` = X ``[length, aux]`` (``aux`` = D elements a row in its
first ``W = ceil(D / lanes)`` words, row stride ``ext_addr[15:0]`` words, or ``W`` when
that is 0: rows padded to the MAC array's width), ``src1`` = gamma (``W`` words) followed
by beta (``W`` words), ``dst`` = Y (same layout as X). ``eps_code`` comes from the top's
register (``SET``).

Per row and word ``w``: three reads (X word, gamma word, beta word), then up to
``lanes`` element beats into the unit (``last`` on element ``D - 1``); the unit's
elements are packed back into words and written. Cycles per row: about
``2 D + 80`` (the unit: one beat per element in, a ~80-cycle reciprocal square root,
one beat per element out).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from .engine import ceil_div_pow2, engine_members
from .layernorm import EPS_BITS, LayerNormUnit

__all__ = ["LayerNormEngine"]


class LayerNormEngine(wiring.Component):
    """LAYERNORM over ``length`` rows.

    Parameters
    ----------
    max_n : int
        Longest row (elements).
    fmt : FixedFormat
        Format of x, gamma, beta and y.
    lanes, addr_bits : int
        Activations per word; buffer address width.
    """

    def __init__(self, max_n: int, fmt, lanes: int, addr_bits: int):
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes}")
        self.max_n, self.fmt, self.lanes = max_n, fmt, lanes
        self.data_bits = lanes * fmt.width
        super().__init__({**engine_members(addr_bits, self.data_bits), "eps_code": In(EPS_BITS)})

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        m.submodules.unit = unit = LayerNormUnit(self.max_n, self.fmt, self.fmt, self.fmt, self.fmt, eps=None)
        m.d.comb += unit.eps_code.eq(self.eps_code)
        words = data.ArrayLayout(self.fmt.width, lanes)
        x_base, g_base, y_base = Signal(16), Signal(16), Signal(16)
        n, rows, stride, nw = Signal(16), Signal(16), Signal(16), Signal(16)
        running = Signal()

        # reads: (row r, word k, part p) with p = 0 x, 1 gamma, 2 beta
        rq_row, rq_word, rq_part = Signal(16), Signal(16), Signal(2)
        rq_row_addr = Signal(16)  # x_base + rq_row * stride
        with m.If(self.start):
            a = self.args
            s = ceil_div_pow2(a.aux, lanes)
            m.d.sync += [x_base.eq(a.src0), g_base.eq(a.src1), y_base.eq(a.dst), n.eq(a.aux), rows.eq(a.length),
                         stride.eq(Mux(a.ext_addr[:16] != 0, a.ext_addr[:16], s)), nw.eq(s), running.eq(1),
                         rq_row.eq(0), rq_word.eq(0), rq_part.eq(0), rq_row_addr.eq(a.src0)]
        with m.Switch(rq_part):
            with m.Case(0):
                m.d.comb += self.rd.payload.eq(rq_row_addr + rq_word)
            with m.Case(1):
                m.d.comb += self.rd.payload.eq(g_base + rq_word)
            with m.Default():
                m.d.comb += self.rd.payload.eq(g_base + nw + rq_word)
        m.d.comb += self.rd.valid.eq(running & (rq_row < rows))
        with m.If(self.rd.valid & self.rd.ready):
            with m.If(rq_part == 2):
                m.d.sync += rq_part.eq(0)
                with m.If(rq_word == nw - 1):
                    m.d.sync += [rq_word.eq(0), rq_row.eq(rq_row + 1), rq_row_addr.eq(rq_row_addr + stride)]
                with m.Else():
                    m.d.sync += rq_word.eq(rq_word + 1)
            with m.Else():
                m.d.sync += rq_part.eq(rq_part + 1)

        # words -> element beats: hold x and gamma, feed with beta's word
        part = Signal(2)
        xw, gw, bw = Signal(words), Signal(words), Signal(words)
        feeding = Signal()
        lane = Signal(range(lanes))
        elem = Signal(16)  # index in the row of the element being fed
        m.d.comb += self.rd_data.ready.eq(~feeding)
        with m.If(self.rd_data.valid & self.rd_data.ready):
            with m.Switch(part):
                with m.Case(0):
                    m.d.sync += [xw.eq(self.rd_data.payload), part.eq(1)]
                with m.Case(1):
                    m.d.sync += [gw.eq(self.rd_data.payload), part.eq(2)]
                with m.Default():
                    m.d.sync += [bw.eq(self.rd_data.payload), part.eq(0), feeding.eq(1), lane.eq(0)]
        is_last = elem == n - 1
        m.d.comb += [unit.i.valid.eq(feeding), unit.i.payload.x.eq(xw[lane]), unit.i.payload.gamma.eq(gw[lane]),
                     unit.i.payload.beta.eq(bw[lane]), unit.i.payload.last.eq(is_last)]
        with m.If(unit.i.valid & unit.i.ready):
            m.d.sync += [lane.eq(lane + 1), elem.eq(elem + 1)]
            with m.If(is_last):
                m.d.sync += [feeding.eq(0), elem.eq(0)]
            with m.Elif(lane == lanes - 1):
                m.d.sync += feeding.eq(0)
        with m.If(self.start):
            m.d.sync += [part.eq(0), feeding.eq(0), elem.eq(0)]

        # output elements -> words
        out = Signal(words)
        o_lane = Signal(range(lanes))
        o_row_addr, o_word, o_rows = Signal(16), Signal(16), Signal(16)
        full = Signal()
        with m.If(self.start):
            m.d.sync += [o_row_addr.eq(self.args.dst), o_word.eq(0), o_rows.eq(0), o_lane.eq(0), full.eq(0)]
        row_end = Signal()
        m.d.comb += [unit.o.ready.eq(~full), self.wr.valid.eq(full),
                     self.wr.payload.addr.eq(o_row_addr + o_word), self.wr.payload.data.eq(out)]
        with m.If(unit.o.valid & unit.o.ready):
            for k in range(lanes):
                with m.If(o_lane == k):
                    m.d.sync += out[k].eq(unit.o.payload.data)
            m.d.sync += o_lane.eq(o_lane + 1)
            with m.If(unit.o.payload.last | (o_lane == lanes - 1)):
                m.d.sync += [full.eq(1), row_end.eq(unit.o.payload.last), o_lane.eq(0)]
        with m.If(self.wr.valid & self.wr.ready):
            m.d.sync += [full.eq(0), out.eq(0)]
            with m.If(row_end):
                m.d.sync += [o_word.eq(0), o_row_addr.eq(o_row_addr + stride), o_rows.eq(o_rows + 1)]
            with m.Else():
                m.d.sync += o_word.eq(o_word + 1)
        with m.If(running & (o_rows == rows) & ~self.start):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
