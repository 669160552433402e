"""Engine of the word-wise ops: GELU (one operand) and ADD (two operands).

Instruction fields: ``src0`` (and ``src1`` for two operands), ``dst``, ``length`` in
words. For ``i`` in ``0 .. length-1``: read ``src0 + i`` (then ``src1 + i``), hand the
word (the two words, ``src0``'s in the low half) to the unit as one beat, write the
unit's word to ``dst + i``. Cycles: about ``length * operands`` (one buffer read a cycle)
plus the unit's latency.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring

from .engine import engine_members

__all__ = ["ElementwiseEngine"]


class ElementwiseEngine(wiring.Component):
    """Streams ``operands`` buffer words per beat through ``unit`` (``i``/``o`` streams).

    Parameters
    ----------
    unit : wiring.Component
        ``i`` payload of ``operands * data_bits`` bits, ``o`` payload of ``data_bits``.
    operands : int
        1 or 2.
    addr_bits, data_bits : int
        Buffer address and word widths.
    """

    def __init__(self, unit, operands: int, addr_bits: int, data_bits: int):
        if operands not in (1, 2):
            raise ValueError(f"operands must be 1 or 2, not {operands!r}")
        if len(unit.i.payload.as_value()) != operands * data_bits or len(unit.o.payload.as_value()) != data_bits:
            raise ValueError(f"unit streams must be {operands} x {data_bits} bits in and {data_bits} out")
        self.unit, self.operands = unit, operands
        super().__init__(engine_members(addr_bits, data_bits))

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        src0, src1, dst = Signal(16), Signal(16), Signal(16)
        length = Signal(16)
        running = Signal()
        req_i, req_op = Signal(16), Signal()  # next read: word req_i of operand req_op
        resp_op = Signal()                    # the next word read is operand resp_op
        held = Signal(len(self.rd_data.payload))
        written = Signal(16)

        with m.If(self.start):
            a = self.args
            m.d.sync += [src0.eq(a.src0), src1.eq(a.src1), dst.eq(a.dst), length.eq(a.length),
                         running.eq(1), req_i.eq(0), req_op.eq(0), resp_op.eq(0), written.eq(0)]

        # reads
        m.d.comb += [self.rd.valid.eq(running & (req_i < length)),
                     self.rd.payload.eq(Mux(req_op, src1, src0) + req_i)]
        with m.If(self.rd.valid & self.rd.ready):
            if self.operands == 2:
                m.d.sync += req_op.eq(~req_op)
                with m.If(req_op):
                    m.d.sync += req_i.eq(req_i + 1)
            else:
                m.d.sync += req_i.eq(req_i + 1)

        # words -> unit beats
        if self.operands == 2:
            m.d.comb += [unit.i.payload.eq(Cat(held, self.rd_data.payload)),
                         unit.i.valid.eq(self.rd_data.valid & resp_op),
                         self.rd_data.ready.eq(~resp_op | unit.i.ready)]
            with m.If(self.rd_data.valid & self.rd_data.ready):
                m.d.sync += resp_op.eq(~resp_op)
                with m.If(~resp_op):
                    m.d.sync += held.eq(self.rd_data.payload)
        else:
            m.d.comb += [unit.i.payload.eq(self.rd_data.payload), unit.i.valid.eq(self.rd_data.valid),
                         self.rd_data.ready.eq(unit.i.ready)]

        # unit words -> buffer
        m.d.comb += [unit.o.ready.eq(self.wr.ready), self.wr.valid.eq(unit.o.valid),
                     self.wr.payload.addr.eq(dst + written), self.wr.payload.data.eq(unit.o.payload)]
        with m.If(self.wr.valid & self.wr.ready):
            m.d.sync += written.eq(written + 1)
        with m.If(running & (written == length)):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
