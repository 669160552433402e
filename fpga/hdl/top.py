"""Accelerator top: controller, DMA (with the on-chip buffer) and the stream units.

```
 ins_req/ins_data ──► Controller ──dma_cmd──► Dma ◄── rd_req/rd_data, wr_req/wr_data ──► external memory
                          │ unit_start/op/src0/dst/length      │ buffer read/write ports
                          ▼                                    ▼
                     stream engine: buffer[src0+i] ──► unit.i ; unit.o ──► buffer[dst+i]
                          └─ selects the unit by opcode from ``_stream_units`` (one line per unit)
```

Every stream unit takes one buffer word (``data_bits``, i.e. ``data_bits // 32`` lanes of
the activation format) per beat and gives one word per beat. A unit op whose opcode has
no unit in this build completes at once and sets the sticky ``error`` output.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..isa import Op
from .controller import Controller
from .dma import ADDR_BITS, Dma
from .gelu import GeluUnit

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The accelerator.

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
        Uses ``mem_port_bits`` (buffer word and external port width) and
        ``act_buffer_bytes`` (buffer depth); the activation format is fixed<32,10>.
    """

    def __init__(self, config=None, *, buffer_words: int | None = None):
        from ..config import AcceleratorConfig

        self.config = config if config is not None else AcceleratorConfig()
        self.data_bits = self.config.mem_port_bits
        self.buffer_words = buffer_words or max(2, self.config.act_buffer_bytes * 8 // self.data_bits)
        self.lanes = self.data_bits // 32
        self._dma = Dma(self.data_bits, self.buffer_words, 16)
        self._ctrl = Controller(self._dma.buf_addr_bits)
        super().__init__({
            "start": In(1),
            "prog_addr": In(ADDR_BITS),
            "done": Out(1),
            "error": Out(1),
            "ins_req": Out(self._ctrl.ins_req.signature),
            "ins_data": In(self._ctrl.ins_data.signature.flip()),
            "rd_req": Out(self._dma.rd_req.signature),
            "rd_data": In(self._dma.rd_data.signature.flip()),
            "wr_req": Out(self._dma.wr_req.signature),
            "wr_data": Out(self._dma.wr_data.signature),
        })

    def _stream_units(self) -> dict:
        """Opcode -> unit with ``i``/``o`` word streams. Add a unit here."""
        return {Op.GELU: GeluUnit(self.lanes)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self._dma
        m.submodules.ctrl = ctrl = self._ctrl
        for name in ("ins_req", "ins_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(ctrl, name))
        for name in ("rd_req", "rd_data", "wr_req", "wr_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dma, name))
        m.d.comb += [ctrl.start.eq(self.start), ctrl.prog_addr.eq(self.prog_addr), self.done.eq(ctrl.done)]
        m.d.comb += [dma.cmd.p.eq(ctrl.dma_cmd.p), dma.cmd.valid.eq(ctrl.dma_cmd.valid),
                     ctrl.dma_cmd.ready.eq(dma.cmd.ready), ctrl.dma_done.eq(dma.done)]

        # stream engine
        op = Signal(4)
        src, dst, length = Signal(16), Signal(16), Signal(16)
        sent, received = Signal(16), Signal(16)
        running = Signal()
        have = Signal()            # rd_word holds buffer[src + sent]
        unit_i_valid, unit_i_ready = Signal(), Signal()
        unit_o_valid, unit_o_payload = Signal(), Signal(self.data_bits)
        m.d.comb += dma.rd_addr.eq(src + sent)
        with m.If(ctrl.unit_start):
            m.d.sync += [op.eq(ctrl.unit_op), src.eq(ctrl.unit_src0), dst.eq(ctrl.unit_dst),
                         length.eq(ctrl.unit_length), sent.eq(0), received.eq(0), have.eq(0)]
        known = Signal()
        for code, unit in self._stream_units().items():
            m.submodules[Op(code).name.lower()] = unit
            sel = op == code
            m.d.comb += [unit.i.payload.eq(dma.rd_word), unit.i.valid.eq(sel & unit_i_valid),
                         unit.o.ready.eq(sel & running)]
            with m.If(sel):
                m.d.comb += [known.eq(1), unit_i_ready.eq(unit.i.ready),
                             unit_o_valid.eq(unit.o.valid), unit_o_payload.eq(unit.o.payload)]
        with m.If(ctrl.unit_start):
            m.d.sync += running.eq(1)
        # read latency: a word is present one cycle after rd_addr settles on src + sent
        m.d.comb += unit_i_valid.eq(running & have & (sent < length))
        with m.If(running & (sent < length)):
            with m.If(~have):
                m.d.sync += have.eq(1)
            with m.Elif(unit_i_ready):
                m.d.sync += [sent.eq(sent + 1), have.eq(0)]
        m.d.comb += [dma.wr_addr.eq(dst + received), dma.wr_word.eq(unit_o_payload),
                     dma.wr_en.eq(running & unit_o_valid)]
        with m.If(running & unit_o_valid):
            m.d.sync += received.eq(received + 1)
        finished = running & ((received == length) | ~known)
        with m.If(finished & ~ctrl.unit_start):
            m.d.sync += running.eq(0)
            with m.If(~known):
                m.d.sync += self.error.eq(1)
        m.d.comb += ctrl.unit_done.eq(finished)
        return m
