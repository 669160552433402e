"""Pipelined unsigned divider: restoring long division, a few quotient bits a stage.

One division a cycle enters and, ``latency`` cycles later, leaves (an elastic pipeline:
a stage moves on when the next one is empty or moving, so back-pressure on ``o`` stops
only the stages behind a waiting result). ``count`` independent divisions travel side
by side in one beat, with a ``tag`` the caller gets back unchanged.

Arithmetic, for a ``Q``-bit quotient (``quotient_bits``): with ``N = hi·2**Q + lo`` and
the precondition ``hi < D`` (that is ``N // D < 2**Q``), the remainder starts at ``hi``
and each step doubles it, appends the next bit of ``lo`` (most significant first) and
subtracts ``D`` when it fits, which is that quotient bit. The remainder stays below
``D``, so every step is one ``divisor_bits + 1``-bit subtract and a select: the
dividend's low part and the quotient share one ``Q``-bit shift register. The result
equals Python's ``N // D`` whenever the precondition holds; ``D = 0`` or a larger
quotient gives an unspecified value (callers size ``Q`` so that it cannot happen:
:func:`fpga.hdl.softmax.reciprocal_divider`).

Timing: the input beat is registered (stage 0: it cuts whatever computed the operands
from the first subtract), then ``ceil(Q / steps_per_stage)`` stages of at most
``steps_per_stage`` steps, each ending in a register. So ``latency = 1 +
ceil(Q / steps_per_stage)`` cycles from the accepting handshake on ``i`` to ``o.valid``
(:func:`fpga.hdl.unit_timing.divider_latency`, which the cost model uses too).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .unit_timing import STEPS_PER_STAGE, divider_latency

__all__ = ["PipelinedDivider", "STEPS_PER_STAGE"]


class PipelinedDivider(wiring.Component):
    """``count`` unsigned divisions ``dividend // divisor`` a beat, one beat a cycle.

    Parameters
    ----------
    dividend_bits, divisor_bits, quotient_bits : int
        Operand and result widths (bits). Exact when ``dividend // divisor < 2**quotient_bits``
        and ``divisor >= 1``.
    count : int
        Divisions per beat (lanes side by side, one valid/ready).
    steps_per_stage : int
        Quotient bits computed between two registers.
    tag_shape : shape-castable
        Payload carried along unchanged (``unsigned(0)``: none).

    Members
    -------
    i : In(stream.Signature(StructLayout({"dividend": ArrayLayout(unsigned(dividend_bits), count),
        "divisor": ArrayLayout(unsigned(divisor_bits), count), "tag": tag_shape})))
    o : Out(stream.Signature(StructLayout({"quotient": ArrayLayout(unsigned(quotient_bits), count),
        "tag": tag_shape})))
    latency : int
        Cycles from a beat's handshake on ``i`` to its ``o.valid`` (the pipeline moving).
    """

    def __init__(self, dividend_bits: int, divisor_bits: int, quotient_bits: int, *, count: int = 1,
                 steps_per_stage: int = STEPS_PER_STAGE, tag_shape=unsigned(0)):
        for name, val in (("dividend_bits", dividend_bits), ("divisor_bits", divisor_bits),
                          ("quotient_bits", quotient_bits), ("count", count), ("steps_per_stage", steps_per_stage)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise TypeError(f"{name} must be a positive integer, not {val!r}")
        self.dividend_bits, self.divisor_bits, self.quotient_bits = dividend_bits, divisor_bits, quotient_bits
        self.count, self.steps_per_stage, self.tag_shape = count, steps_per_stage, tag_shape
        self.latency = divider_latency(quotient_bits, steps_per_stage)
        self.stages = self.latency - 1
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "dividend": data.ArrayLayout(unsigned(dividend_bits), count),
                "divisor": data.ArrayLayout(unsigned(divisor_bits), count),
                "tag": tag_shape}))),
            "o": Out(stream.Signature(data.StructLayout({
                "quotient": data.ArrayLayout(unsigned(quotient_bits), count),
                "tag": tag_shape}))),
        })

    def elaborate(self, platform):
        m = Module()
        q_bits, d_bits = self.quotient_bits, self.divisor_bits
        n_stages = self.stages + 1  # the input register, then the compute stages
        valid = [Signal(name=f"valid{s}") for s in range(n_stages)]
        ready = [Signal(name=f"ready{s}") for s in range(n_stages)]  # stage s takes a beat this cycle
        rem = [[Signal(d_bits, name=f"rem{s}_{j}") for j in range(self.count)] for s in range(n_stages)]
        shift = [[Signal(q_bits, name=f"shift{s}_{j}") for j in range(self.count)] for s in range(n_stages)]
        divisor = [[Signal(d_bits, name=f"div{s}_{j}") for j in range(self.count)] for s in range(n_stages)]
        tag = [Signal(Shape.cast(self.tag_shape), name=f"tag{s}") for s in range(n_stages)]

        m.d.comb += [self.o.valid.eq(valid[-1]), self.o.payload.tag.eq(tag[-1])]
        m.d.comb += [self.o.payload.quotient[j].eq(shift[-1][j]) for j in range(self.count)]
        downstream = self.o.ready
        for s in reversed(range(n_stages)):
            m.d.comb += ready[s].eq(~valid[s] | downstream)
            downstream = ready[s]
        m.d.comb += self.i.ready.eq(ready[0])

        # stage 0: register the operands; the remainder starts at the dividend's high part
        with m.If(ready[0]):
            m.d.sync += [valid[0].eq(self.i.valid), tag[0].eq(self.i.payload.tag)]
            for j in range(self.count):
                n, d = self.i.payload.dividend[j], self.i.payload.divisor[j]
                m.d.sync += [rem[0][j].eq(n[q_bits:]), shift[0][j].eq(n[:q_bits]), divisor[0][j].eq(d)]

        done = 0
        for s in range(1, n_stages):
            steps = min(self.steps_per_stage, q_bits - done)
            with m.If(ready[s]):
                m.d.sync += [valid[s].eq(valid[s - 1]), tag[s].eq(tag[s - 1])]
                for j in range(self.count):
                    r, sh = rem[s - 1][j], shift[s - 1][j]
                    for _ in range(steps):
                        r, sh = _step(m, r, sh, divisor[s - 1][j], q_bits, d_bits)
                    m.d.sync += [rem[s][j].eq(r), shift[s][j].eq(sh), divisor[s][j].eq(divisor[s - 1][j])]
            done += steps
        return m


def _step(m, rem, shift, divisor, q_bits: int, d_bits: int):
    """One restoring step: ``t = 2 rem + next dividend bit``; subtract ``divisor`` if it fits."""
    t = Cat(shift[q_bits - 1], rem)                    # d_bits + 1 bits
    diff = Signal(d_bits + 2)
    m.d.comb += diff.eq(t - divisor)
    fits = ~diff[d_bits + 1]                           # no borrow: t >= divisor
    new_rem = Signal(d_bits)
    m.d.comb += new_rem.eq(Mux(fits, diff[:d_bits], t[:d_bits]))
    new_shift = Signal(q_bits)
    m.d.comb += new_shift.eq(Cat(fits, shift[:q_bits - 1]))
    return new_rem, new_shift
