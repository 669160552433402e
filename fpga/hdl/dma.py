"""DMA between an external memory port and an on-chip buffer (``lib.memory.Memory``).

The external port is split like AXI: a read request stream (``rd_req``: byte address,
beats) answered by a read data stream (``rd_data``), and a write request stream
(``wr_req``) followed by its write data beats (``wr_data``). No write response channel
(the memory model accepts writes in order). Transfers are cut into bursts of at most
``burst_beats`` beats; addresses advance by ``data_bits // 8`` bytes per beat.

A command on ``cmd`` (``store`` 0 = LOAD external -> buffer, 1 = STORE buffer ->
external; ``ext_addr`` in bytes; ``buf_addr`` and ``length`` in buffer words of
``data_bits``) runs to completion; ``done`` pulses for one cycle at its end. The buffer
has one more read port, ``rd_addr``/``rd_word`` (one cycle latency), and one more write
port, ``wr_en``/``wr_addr``/``wr_word``, for the units.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Dma", "ADDR_BITS", "LEN_BITS"]

#: External byte-address width.
ADDR_BITS = 40
#: Width of a transfer length (buffer words) and a burst length field.
LEN_BITS = 16


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
    done, busy : Out(1)
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
        cmd = data.StructLayout({"store": 1, "ext_addr": ADDR_BITS,
                                 "buf_addr": self.buf_addr_bits, "length": LEN_BITS})
        super().__init__({
            "cmd": In(stream.Signature(cmd)),
            "rd_req": Out(stream.Signature(req)),
            "rd_data": In(stream.Signature(data_bits)),
            "wr_req": Out(stream.Signature(req)),
            "wr_data": Out(stream.Signature(data_bits)),
            "done": Out(1),
            "busy": Out(1),
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
        dp = buf.read_port()  # DMA's own read port (STORE)
        up = buf.read_port()  # units' read port
        m.d.comb += [up.addr.eq(self.rd_addr), self.rd_word.eq(up.data)]
        uw = buf.write_port()  # units' write port (the controller never overlaps it with a LOAD)
        m.d.comb += [uw.addr.eq(self.wr_addr), uw.data.eq(self.wr_word), uw.en.eq(self.wr_en)]

        store = Signal()
        ext = Signal(ADDR_BITS)
        ptr = Signal(self.buf_addr_bits)
        left = Signal(LEN_BITS)          # words not yet requested
        beats = Signal(8)                # beats left in the current burst
        burst = Signal(8)
        bytes_per_beat = self.data_bits // 8
        m.d.comb += burst.eq(
            Mux(left < self.burst_beats, left[:8], self.burst_beats))

        m.d.comb += [self.rd_req.p.addr.eq(ext), self.rd_req.p.beats.eq(burst),
                     self.wr_req.p.addr.eq(ext), self.wr_req.p.beats.eq(burst),
                     wp.addr.eq(ptr), wp.data.eq(self.rd_data.payload),
                     self.wr_data.payload.eq(dp.data), dp.addr.eq(ptr)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [store.eq(self.cmd.p.store), ext.eq(self.cmd.p.ext_addr),
                                 ptr.eq(self.cmd.p.buf_addr), left.eq(self.cmd.p.length)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                with m.If(left == 0):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Elif(store):
                    m.next = "WR_REQ"
                with m.Else():
                    m.next = "RD_REQ"
            with m.State("RD_REQ"):
                m.d.comb += [self.busy.eq(1), self.rd_req.valid.eq(1)]
                with m.If(self.rd_req.ready):
                    m.d.sync += [beats.eq(burst), left.eq(left - burst),
                                 ext.eq(ext + burst * bytes_per_beat)]
                    m.next = "RD_DATA"
            with m.State("RD_DATA"):
                m.d.comb += [self.busy.eq(1), self.rd_data.ready.eq(1)]
                with m.If(self.rd_data.valid):
                    m.d.comb += wp.en.eq(1)
                    m.d.sync += [ptr.eq(ptr + 1), beats.eq(beats - 1)]
                    with m.If(beats == 1):
                        m.next = "NEXT"
            with m.State("WR_REQ"):
                m.d.comb += [self.busy.eq(1), self.wr_req.valid.eq(1)]
                with m.If(self.wr_req.ready):
                    m.d.sync += [beats.eq(burst), left.eq(left - burst),
                                 ext.eq(ext + burst * bytes_per_beat)]
                    m.next = "WR_PRIME"
            with m.State("WR_PRIME"):  # buffer read latency: dp.data = buf[ptr] next cycle
                m.d.comb += self.busy.eq(1)
                m.next = "WR_DATA"
            with m.State("WR_DATA"):
                m.d.comb += [self.busy.eq(1), self.wr_data.valid.eq(1)]
                with m.If(self.wr_data.ready):
                    m.d.comb += dp.addr.eq(ptr + 1)
                    m.d.sync += [ptr.eq(ptr + 1), beats.eq(beats - 1)]
                    with m.If(beats == 1):
                        m.next = "NEXT"
        return m
