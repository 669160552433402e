"""What every op engine of the accelerator top shares: its ports and the buffer reader.

An *engine* runs one instruction of the top's compute ops (GELU, ADD, LAYERNORM, LINEAR,
ATTENTION, MOE_ROUTE): it reads operand words from the on-chip buffer, feeds its unit's
streams, and writes the unit's results back to the buffer. The controller starts one
instruction at a time, so the top hands the buffer's one read port and one write port
to the engine of the running op.

Ports of an engine (:func:`engine_members`):

* ``start`` (in): one-cycle pulse; ``args`` holds the instruction's fields that cycle
  (the engine latches what it needs);
* ``done`` (out): one-cycle pulse when the last result word has been written;
* ``rd`` (out stream of buffer word addresses) and ``rd_data`` (in stream of words):
  read requests and their words, in request order (:class:`BufferReader` in the top);
* ``wr`` (out stream of ``{addr, data}``): buffer writes; the top takes one per cycle.

Addresses are buffer words; a word holds ``lanes`` activations, lane 0 in bits
``[0, act_bits)``. A matrix ``X[M, D]`` at word ``A`` has a row stride of
``ceil(D / lanes)`` words unless an op says otherwise: element ``X[t, d]`` is lane
``d % lanes`` of word ``A + t * stride + d // lanes``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..isa import FIELDS

__all__ = ["ARGS", "engine_members", "write_layout", "BufferReader", "ceil_div_pow2"]

#: The instruction fields an engine sees (every field of :mod:`fpga.isa` but the opcode).
ARGS = data.StructLayout({name: width for name, _, width in FIELDS[1:]})


def write_layout(addr_bits: int, data_bits: int) -> data.StructLayout:
    return data.StructLayout({"addr": addr_bits, "data": data_bits})


def engine_members(addr_bits: int, data_bits: int) -> dict:
    """The ports every engine has (see the module docstring)."""
    return {
        "start": In(1),
        "args": In(ARGS),
        "done": Out(1),
        "rd": Out(stream.Signature(unsigned(addr_bits))),
        "rd_data": In(stream.Signature(unsigned(data_bits))),
        "wr": Out(stream.Signature(write_layout(addr_bits, data_bits))),
    }


def ceil_div_pow2(x, n: int):
    """``ceil(x / n)`` for a power of two ``n`` (an Amaranth value)."""
    shift = n.bit_length() - 1
    return (x + (n - 1)) >> shift


class BufferReader(wiring.Component):
    """Read requests in, words out, for a synchronous (one-cycle) memory read port.

    Up to two words are in flight or waiting (a two-entry queue), so that a consumer that
    takes a word every cycle gets one every cycle.

    Members
    -------
    req : In(stream.Signature(unsigned(addr_bits)))
    data : Out(stream.Signature(unsigned(data_bits)))
        Words in request order.
    mem_addr : Out(addr_bits); mem_data : In(data_bits)
        To the memory's read port (``mem_data`` is the word at last cycle's ``mem_addr``).
    """

    def __init__(self, addr_bits: int, data_bits: int):
        self.addr_bits, self.data_bits = addr_bits, data_bits
        super().__init__({
            "req": In(stream.Signature(unsigned(addr_bits))),
            "data": Out(stream.Signature(unsigned(data_bits))),
            "mem_addr": Out(addr_bits),
            "mem_data": In(data_bits),
        })

    def elaborate(self, platform):
        m = Module()
        # a two-entry queue in registers (head ``q0``); Yosys 0.70 fails to map a
        # depth-2 lib.fifo memory onto LUT RAM ("invalid OPTION_ABITS/WIDTH combination")
        q0, q1 = Signal(self.data_bits), Signal(self.data_bits)
        count = Signal(range(3))
        in_flight = Signal()
        push, pop = in_flight, self.data.valid & self.data.ready
        m.d.comb += [
            self.data.payload.eq(q0), self.data.valid.eq(count != 0),
            self.req.ready.eq(count + in_flight - pop < 2),
            self.mem_addr.eq(self.req.payload),
        ]
        m.d.sync += [in_flight.eq(self.req.valid & self.req.ready), count.eq(count + push - pop)]
        with m.If(pop):
            m.d.sync += q0.eq(Mux(count == 2, q1, self.mem_data))
            with m.If(push & (count == 2)):
                m.d.sync += q1.eq(self.mem_data)
        with m.Elif(push):
            with m.If(count == 0):
                m.d.sync += q0.eq(self.mem_data)
            with m.Else():
                m.d.sync += q1.eq(self.mem_data)
        return m
