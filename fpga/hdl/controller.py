"""Controller: fetches 128-bit instructions (:mod:`fpga.isa`) and sequences DMA and units.

After ``start`` (with ``prog_addr``, a byte address) the controller reads one
instruction per request on its own read port (``ins_req``: address, beats = 1;
``ins_data``: 128-bit words), keeps a program counter ``pc`` (instructions), decodes,
and executes in order, one at a time:

* LOAD / STORE -> one command on ``dma_cmd``; waits for ``dma_done``.
* any unit op (LINEAR, GELU, LAYERNORM, ATTENTION, ADD, MOE_ROUTE) -> ``unit_start``
  pulses for one cycle with ``unit_op``, ``unit_src0``, ``unit_src1``, ``unit_dst``,
  ``unit_length``, ``unit_flags``, ``unit_aux``, ``unit_ext_addr`` valid; waits for ``unit_done``.
* SYNC -> nothing (execution is already in order); END -> ``done`` rises and stays
  high until the next ``start``.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..isa import FIELDS, WORD_BITS, Op
from .dma import ADDR_BITS, LEN_BITS

__all__ = ["Controller"]

_FIELD = {name: (lsb, width) for name, lsb, width in FIELDS}


class Controller(wiring.Component):
    """Instruction fetch, decode and sequencing.

    Parameters
    ----------
    buf_addr_bits : int
        Width of buffer addresses given to the DMA.
    """

    def __init__(self, buf_addr_bits: int):
        if not isinstance(buf_addr_bits, int) or buf_addr_bits <= 0:
            raise TypeError(f"buf_addr_bits must be a positive integer, not {buf_addr_bits!r}")
        self.buf_addr_bits = buf_addr_bits
        req = data.StructLayout({"addr": ADDR_BITS, "beats": 8})
        # the DMA's command without its last field (to_unit): the controller only LOADs/STOREs the buffer
        cmd = data.StructLayout({"store": 1, "ext_addr": ADDR_BITS, "buf_addr": buf_addr_bits, "length": LEN_BITS})
        super().__init__({
            "start": In(1),
            "prog_addr": In(ADDR_BITS),
            "done": Out(1),
            "pc": Out(32),
            "ins_req": Out(stream.Signature(req)),
            "ins_data": In(stream.Signature(WORD_BITS)),
            "dma_cmd": Out(stream.Signature(cmd)),
            "dma_done": In(1),
            "unit_start": Out(1),
            "unit_op": Out(4),
            "unit_flags": Out(4),
            "unit_dst": Out(16),
            "unit_src0": Out(16),
            "unit_src1": Out(16),
            "unit_length": Out(16),
            "unit_aux": Out(16),
            "unit_ext_addr": Out(ADDR_BITS),
            "unit_done": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        ins = Signal(WORD_BITS)

        def field(name):
            lsb, width = _FIELD[name]
            return ins[lsb:lsb + width]

        op = field("op")
        base = Signal(ADDR_BITS)
        m.d.comb += [
            self.ins_req.p.addr.eq(base + self.pc * (WORD_BITS // 8)), self.ins_req.p.beats.eq(1),
            self.dma_cmd.p.store.eq(op == Op.STORE), self.dma_cmd.p.ext_addr.eq(field("ext_addr")),
            self.dma_cmd.p.length.eq(field("length")),
            self.unit_op.eq(op), self.unit_flags.eq(field("flags")), self.unit_dst.eq(field("dst")),
            self.unit_src0.eq(field("src0")), self.unit_src1.eq(field("src1")),
            self.unit_length.eq(field("length")), self.unit_aux.eq(field("aux")),
            self.unit_ext_addr.eq(field("ext_addr")),
        ]
        with m.If(op == Op.STORE):
            m.d.comb += self.dma_cmd.p.buf_addr.eq(field("src0"))
        with m.Else():
            m.d.comb += self.dma_cmd.p.buf_addr.eq(field("dst"))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [base.eq(self.prog_addr), self.pc.eq(0), self.done.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.ins_req.valid.eq(1)
                with m.If(self.ins_req.ready):
                    m.next = "WAIT_INS"
            with m.State("WAIT_INS"):
                m.d.comb += self.ins_data.ready.eq(1)
                with m.If(self.ins_data.valid):
                    m.d.sync += ins.eq(self.ins_data.payload)
                    m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(op == Op.END):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
                with m.Elif((op == Op.LOAD) | (op == Op.STORE)):
                    m.next = "DMA"
                with m.Elif(op == Op.SYNC):
                    m.next = "NEXT"
                with m.Else():
                    m.d.comb += self.unit_start.eq(1)
                    m.next = "UNIT"
            with m.State("DMA"):
                m.d.comb += self.dma_cmd.valid.eq(1)
                with m.If(self.dma_cmd.ready):
                    m.next = "DMA_WAIT"
            with m.State("DMA_WAIT"):
                with m.If(self.dma_done):
                    m.next = "NEXT"
            with m.State("UNIT"):
                with m.If(self.unit_done):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += self.pc.eq(self.pc + 1)
                m.next = "FETCH"
        return m
