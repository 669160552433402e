"""DMA between an external memory port and an on-chip buffer (``lib.memory.Memory``).

The external port is split like AXI: a read request stream (``rd_req``: byte address,
beats) answered by a read data stream (``rd_data``), and a write request stream
(``wr_req``) followed by its write data beats (``wr_data``). No write response channel
(the memory model accepts writes in order). Transfers are cut into bursts of at most
``burst_beats`` beats; addresses advance by ``data_bits // 8`` bytes per beat. Reads keep up to ``2 * burst_beats`` beats requested
ahead of the words received (the next burst is requested while one streams), so that a
memory with a latency of up to ``burst_beats`` cycles delivers a LOAD, and the linear
unit's weights, at one word a cycle. Writes issue one burst at a time.

A command on ``cmd`` (``store`` 0 = LOAD external -> buffer, 1 = STORE buffer ->
external; ``ext_addr`` in bytes; ``buf_addr`` and ``length`` in buffer words of
``data_bits``; ``to_unit`` 1 = a LOAD whose words leave on the ``unit_words`` stream
instead of entering the buffer, e.g. weights streamed into the linear unit) runs to
completion; ``done`` pulses for one cycle at its end.

The buffer is one simple dual-port memory (one write port, one synchronous read port),
so that it maps onto block RAM. The units reach it through ``rd_addr``/``rd_word`` (one
cycle latency) and ``wr_en``/``wr_addr``/``wr_word`` whenever the DMA is not moving
words into or out of the buffer (``buf_busy`` low); the controller executes in order, so
a unit and a buffer transfer never overlap (a ``to_unit`` transfer leaves the buffer to
the units).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Dma", "ADDR_BITS", "LEN_BITS", "cmd_layout"]

#: External byte-address width.
ADDR_BITS = 40
#: Width of a transfer length (words): a LINEAR's weight transfer for one token tile,
#: ``N / mac_cols`` weight blocks, is one command.
LEN_BITS = 32


def cmd_layout(buf_addr_bits: int) -> data.StructLayout:
    """Layout of a DMA command (``to_unit`` last, so that older packers leave it 0)."""
    return data.StructLayout({"store": 1, "ext_addr": ADDR_BITS, "buf_addr": buf_addr_bits,
                              "length": LEN_BITS, "to_unit": 1})


class Dma(wiring.Component):
    """DMA engine owning one on-chip buffer.

    Parameters
    ----------
    data_bits : int
        Width of the external memory port and of a buffer word (default 256).
    depth : int
        Buffer words.
    burst_beats : int
        Longest burst issued on the external port.

    Members
    -------
    cmd : In(stream.Signature(...))
        ``store``, ``ext_addr``, ``buf_addr``, ``length``.
    rd_req, wr_req : Out(stream.Signature(addr, beats))
    rd_data : In(stream.Signature(data_bits))
    wr_data : Out(stream.Signature(data_bits))
    unit_words : Out(stream.Signature(data_bits))
        Words of a ``to_unit`` LOAD, in order.
    done, busy : Out(1)
    buf_busy : Out(1)
        The DMA owns the buffer's ports (a LOAD into or a STORE from the buffer).
    rd_addr : In(buf_addr_bits); rd_word : Out(data_bits)
    wr_en : In(1); wr_addr : In(buf_addr_bits); wr_word : In(data_bits)
    """

    def __init__(self, data_bits: int = 256, depth: int = 1024, burst_beats: int = 16):
        for name, value in (("data_bits", data_bits), ("depth", depth), ("burst_beats", burst_beats)):
            if not isinstance(value, int) or value <= 0:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        if data_bits % 8:
            raise ValueError(f"data_bits must be a multiple of 8, not {data_bits}")
        if burst_beats >= 1 << 8:
            raise ValueError(f"burst_beats must be below 256, not {burst_beats}")
        self.data_bits, self.depth, self.burst_beats = data_bits, depth, burst_beats
        self.buf_addr_bits = max(1, (depth - 1).bit_length())
        req = data.StructLayout({"addr": ADDR_BITS, "beats": 8})
        cmd = cmd_layout(self.buf_addr_bits)
        super().__init__({
            "cmd": In(stream.Signature(cmd)),
            "rd_req": Out(stream.Signature(req)),
            "rd_data": In(stream.Signature(data_bits)),
            "wr_req": Out(stream.Signature(req)),
            "wr_data": Out(stream.Signature(data_bits)),
            "unit_words": Out(stream.Signature(data_bits)),
            "done": Out(1),
            "busy": Out(1),
            "buf_busy": Out(1),
            "rd_addr": In(self.buf_addr_bits),
            "rd_word": Out(data_bits),
            "wr_en": In(1),
            "wr_addr": In(self.buf_addr_bits),
            "wr_word": In(data_bits),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = Memory(shape=unsigned(self.data_bits), depth=self.depth, init=[])
        wp = buf.write_port()
        rp = buf.read_port()

        store = Signal()
        to_unit = Signal()
        ptr = Signal(self.buf_addr_bits)
        dma_wr_en = Signal()
        dma_rd_addr = Signal(self.buf_addr_bits)
        m.d.comb += self.buf_busy.eq(self.busy & ~to_unit)
        # one write port and one read port, shared: the DMA's while it owns the buffer
        with m.If(self.buf_busy):
            m.d.comb += [wp.addr.eq(ptr), wp.data.eq(self.rd_data.payload), wp.en.eq(dma_wr_en),
                         rp.addr.eq(dma_rd_addr)]
        with m.Else():
            m.d.comb += [wp.addr.eq(self.wr_addr), wp.data.eq(self.wr_word), wp.en.eq(self.wr_en),
                         rp.addr.eq(self.rd_addr)]
        m.d.comb += [self.rd_word.eq(rp.data), self.wr_data.payload.eq(rp.data),
                     self.unit_words.payload.eq(self.rd_data.payload)]

        ext = Signal(ADDR_BITS)
        left = Signal(LEN_BITS)          # words not yet requested
        data_left = Signal(LEN_BITS)     # words of a read not yet received
        ahead = Signal(range(2 * self.burst_beats + 1))  # beats requested, not yet received
        beats = Signal(8)                # beats left in the current write burst
        burst = Signal(8)
        bytes_per_beat = self.data_bits // 8
        m.d.comb += burst.eq(
            Mux(left < self.burst_beats, left[:8], self.burst_beats))

        m.d.comb += [self.rd_req.p.addr.eq(ext), self.rd_req.p.beats.eq(burst),
                     self.wr_req.p.addr.eq(ext), self.wr_req.p.beats.eq(burst),
                     dma_rd_addr.eq(ptr)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [store.eq(self.cmd.p.store), ext.eq(self.cmd.p.ext_addr),
                                 ptr.eq(self.cmd.p.buf_addr), left.eq(self.cmd.p.length),
                                 data_left.eq(self.cmd.p.length), ahead.eq(0),
                                 to_unit.eq(self.cmd.p.to_unit & ~self.cmd.p.store)]
                    with m.If(self.cmd.p.store):
                        m.next = "NEXT"
                    with m.Else():
                        m.next = "READ"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                with m.If(left == 0):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "WR_REQ"
            with m.State("READ"):  # requests run ahead of the words, up to 2 bursts
                m.d.comb += [self.busy.eq(1),
                             self.rd_req.valid.eq((left != 0) & (ahead + burst <= 2 * self.burst_beats)),
                             self.rd_data.ready.eq((data_left != 0) & (~to_unit | self.unit_words.ready)),
                             self.unit_words.valid.eq(to_unit & (data_left != 0) & self.rd_data.valid)]
                requested = self.rd_req.valid & self.rd_req.ready
                received = self.rd_data.valid & self.rd_data.ready
                with m.If(requested):
                    m.d.sync += [left.eq(left - burst), ext.eq(ext + burst * bytes_per_beat)]
                m.d.sync += ahead.eq(ahead + Mux(requested, burst, 0) - received)
                with m.If(received):
                    m.d.comb += dma_wr_en.eq(~to_unit)
                    m.d.sync += [ptr.eq(ptr + 1), data_left.eq(data_left - 1)]
                with m.If(data_left == 0):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("WR_REQ"):
                m.d.comb += [self.busy.eq(1), self.wr_req.valid.eq(1)]
                with m.If(self.wr_req.ready):
                    m.d.sync += [beats.eq(burst), left.eq(left - burst),
                                 ext.eq(ext + burst * bytes_per_beat)]
                    m.next = "WR_PRIME"
            with m.State("WR_PRIME"):  # buffer read latency: rp.data = buf[ptr] next cycle
                m.d.comb += self.busy.eq(1)
                m.next = "WR_DATA"
            with m.State("WR_DATA"):
                m.d.comb += [self.busy.eq(1), self.wr_data.valid.eq(1)]
                with m.If(self.wr_data.ready):
                    m.d.comb += dma_rd_addr.eq(ptr + 1)
                    m.d.sync += [ptr.eq(ptr + 1), beats.eq(beats - 1)]
                    with m.If(beats == 1):
                        m.next = "NEXT"
        return m
