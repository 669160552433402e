"""Engine of LAYERNORM: rows of a matrix through :class:`~fpga.hdl.layernorm.LayerNormUnit`.

Instruction fields: ``src0`` = X ``[length, aux]`` (``aux`` = D elements a row in its
first ``W = ceil(D / lanes)`` words, row stride ``ext_addr[15:0]`` words, or ``W`` when
that is 0: rows padded to the MAC array's width), ``src1`` = gamma (``W`` words) followed
by beta (``W`` words), ``dst`` = Y (same layout as X; lanes past D in a row's last word
are written 0). ``eps_code`` comes from the top's register (``SET``).

The read port first fetches gamma and beta (``2 W`` reads, into the unit's parameter
memories), then every row's ``W`` words once; the unit takes a word a cycle, keeps three
rows in flight (statistics, reciprocal square root, output) and hands out a word a cycle,
written as it comes (the unit's input and output registers add 10 cycles to an
instruction, not to a row). A row costs ``max(W, B)`` cycles in steady state, ``B =``
:func:`~fpga.hdl.unit_timing.rsqrt_cycles` ``+ 1`` (43): :func:`~fpga.hdl.unit_timing.layernorm_cycles` is the
exact count, asserted by ``simulators/tb/tb_layernorm_engine.py`` with no stalls.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .engine import ceil_div_pow2, engine_members
from .layernorm import EPS_BITS, LayerNormUnit
from .unit_timing import RSQRT_STEPS, layernorm_cycles

__all__ = ["LayerNormEngine", "layernorm_cycles", "RSQRT_STEPS"]


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
        m.submodules.unit = unit = LayerNormUnit(self.max_n, self.fmt, self.fmt, self.fmt, self.fmt, eps=None,
                                                 lanes=lanes, rsqrt_steps=RSQRT_STEPS)
        m.d.comb += unit.eps_code.eq(self.eps_code)
        g_base, n, rows, stride, nw = Signal(16), Signal(16), Signal(16), Signal(16), Signal(16)
        running = Signal()
        m.d.comb += unit.n.eq(n)

        # reads: 2 W parameter words (gamma then beta: consecutive), then each row's W words
        rq_param, rq_k = Signal(), Signal(17)  # parameter word k, or word k of row rq_row
        rq_row, rq_row_addr = Signal(16), Signal(16)
        with m.If(self.start):
            a = self.args
            s = ceil_div_pow2(a.aux, lanes)
            m.d.sync += [g_base.eq(a.src1), n.eq(a.aux), rows.eq(a.length),
                         stride.eq(Mux(a.ext_addr[:16] != 0, a.ext_addr[:16], s)), nw.eq(s), running.eq(1),
                         rq_param.eq(1), rq_k.eq(0), rq_row.eq(0), rq_row_addr.eq(a.src0)]
        m.d.comb += [self.rd.payload.eq(Mux(rq_param, g_base + rq_k, rq_row_addr + rq_k)),
                     self.rd.valid.eq(running & (rq_row < rows))]
        with m.If(self.rd.valid & self.rd.ready):
            m.d.sync += rq_k.eq(rq_k + 1)
            with m.If(rq_param & (rq_k == 2 * nw - 1)):
                m.d.sync += [rq_param.eq(0), rq_k.eq(0)]
            with m.Elif(~rq_param & (rq_k == nw - 1)):
                m.d.sync += [rq_k.eq(0), rq_row.eq(rq_row + 1), rq_row_addr.eq(rq_row_addr + stride)]

        # words in: parameters into the unit's memories, then rows into its stream
        rx_param, rx_k = Signal(), Signal(17)
        with m.If(self.start):
            m.d.sync += [rx_param.eq(1), rx_k.eq(0)]
        p = unit.param
        m.d.comb += [p.addr.eq(Mux(rx_k < nw, rx_k, rx_k - nw)), p.gamma.eq(self.rd_data.payload),
                     p.beta.eq(self.rd_data.payload), unit.i.payload.x.eq(self.rd_data.payload),
                     unit.i.valid.eq(self.rd_data.valid & ~rx_param),
                     self.rd_data.ready.eq(rx_param | unit.i.ready)]
        with m.If(self.rd_data.valid & rx_param):
            m.d.comb += [p.gamma_en.eq(rx_k < nw), p.beta_en.eq(rx_k >= nw)]
            m.d.sync += rx_k.eq(rx_k + 1)
            with m.If(rx_k == 2 * nw - 1):
                m.d.sync += rx_param.eq(0)

        # words out, as they come
        o_row_addr, o_word, o_rows = Signal(16), Signal(16), Signal(16)
        with m.If(self.start):
            m.d.sync += [o_row_addr.eq(self.args.dst), o_word.eq(0), o_rows.eq(0)]
        m.d.comb += [self.wr.valid.eq(unit.o.valid), unit.o.ready.eq(self.wr.ready),
                     self.wr.payload.addr.eq(o_row_addr + o_word), self.wr.payload.data.eq(unit.o.payload.data)]
        with m.If(self.wr.valid & self.wr.ready):
            with m.If(unit.o.payload.last):
                m.d.sync += [o_word.eq(0), o_row_addr.eq(o_row_addr + stride), o_rows.eq(o_rows + 1)]
            with m.Else():
                m.d.sync += o_word.eq(o_word + 1)
        with m.If(running & (o_rows == rows) & ~self.start):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
