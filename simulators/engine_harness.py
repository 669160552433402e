"""An engine of the accelerator top with the top's buffer reader, for unit testbenches.

:class:`EngineHarness` wraps one engine (:mod:`fpga.hdl.engine`) the way
:class:`fpga.hdl.top.Accelerator` drives it: its ``rd``/``rd_data`` streams go through a
:class:`~fpga.hdl.engine.BufferReader` to a synchronous memory read port (``mem_addr``
out, ``mem_data`` in: the word at last cycle's ``mem_addr``), its ``wr`` stream is a port.
Two stall inputs let a testbench hold the read request and read data streams (``rd_stall``:
no request is taken; ``data_stall``: no word is handed over); ``wr__ready`` is driven by
the testbench directly. With no stalls and ``wr__ready`` high the engine sees exactly the
top's timing, so cycle counts measured here are the top's. Every other port of the engine
(``start``, ``args``, ``done``, registers) is forwarded under its own name.

An engine with a DMA port (LINEAR: ``dma_cmd``, ``dma_words``) gets the top's
:class:`~fpga.hdl.dma.Dma` behind it, as in :class:`fpga.hdl.top.Accelerator`; the DMA's
external read port (``rd_req``, ``rd_data``) replaces those two, for the testbench's
memory model. Its buffer is unused (2 words): such engines' transfers go to the unit.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpga.hdl.dma import Dma
from fpga.hdl.engine import BufferReader

__all__ = ["EngineHarness"]


class EngineHarness(wiring.Component):
    """``engine`` behind a :class:`BufferReader`, with stall inputs (module docstring).

    Parameters
    ----------
    engine : wiring.Component
        An engine with the ports of :func:`fpga.hdl.engine.engine_members`.
    addr_bits, data_bits : int
        Buffer address and word widths.
    burst_beats : int
        Longest DMA burst (the top's: 16), for engines with a DMA port.
    """

    #: Buffer words of the DMA of an engine with a DMA port (its ``buf_addr_bits`` is 1).
    DMA_WORDS = 2

    def __init__(self, engine, addr_bits: int, data_bits: int, burst_beats: int = 16):
        self.engine = engine
        self.reader = BufferReader(addr_bits, data_bits)
        own = {"rd", "rd_data", "dma_cmd", "dma_words"}
        members = {name: member for name, member in engine.signature.members.items() if name not in own}
        self.dma = None
        if "dma_cmd" in engine.signature.members:
            self.dma = Dma(data_bits, self.DMA_WORDS, burst_beats)
            members.update(rd_req=Out(self.dma.rd_req.signature), rd_data=In(self.dma.rd_data.signature.flip()))
        super().__init__({**members, "mem_addr": Out(addr_bits), "mem_data": In(data_bits),
                          "rd_stall": In(1), "data_stall": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.reader = rd = self.reader
        if self.dma is not None:
            m.submodules.dma = dma = self.dma
            wiring.connect(m, eng.dma_cmd, dma.cmd)
            wiring.connect(m, dma.unit_words, eng.dma_words)
            for name in ("rd_req", "rd_data"):
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dma, name))
            m.d.comb += [dma.rd_addr.eq(0), dma.wr_en.eq(0), dma.wr_data.ready.eq(0), dma.wr_req.ready.eq(0)]
        for name, member in eng.signature.members.items():
            if name in ("rd", "rd_data", "dma_cmd", "dma_words"):
                continue
            if member.is_signature:
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(eng, name))
            elif member.flow == In:
                m.d.comb += getattr(eng, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(eng, name))
        m.d.comb += [
            rd.req.payload.eq(eng.rd.payload), rd.req.valid.eq(eng.rd.valid & ~self.rd_stall),
            eng.rd.ready.eq(rd.req.ready & ~self.rd_stall),
            eng.rd_data.payload.eq(rd.data.payload), eng.rd_data.valid.eq(rd.data.valid & ~self.data_stall),
            rd.data.ready.eq(eng.rd_data.ready & ~self.data_stall),
            self.mem_addr.eq(rd.mem_addr), rd.mem_data.eq(self.mem_data),
        ]
        return m
