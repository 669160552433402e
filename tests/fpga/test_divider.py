"""The pipelined divider (fpga/hdl/divider.py) and the softmax reciprocal built on it, in
Amaranth's simulator: Python's ``//`` and ``hwgen.numerics.softmax.reciprocal`` on random
and edge operands, random stalls on both streams, and the latency without stalls."""

from __future__ import annotations

import gc
import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal, unsigned
from amaranth.sim import Simulator

from fpga.hdl.divider import PipelinedDivider
from fpga.hdl.softmax import reciprocal_divider, reciprocal_operands_hw
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, SoftmaxSpec, reciprocal


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="quotient_bits must be a positive integer, not 0"):
        PipelinedDivider(8, 4, 0)
    with pytest.raises(TypeError, match="steps_per_stage must be a positive integer"):
        PipelinedDivider(8, 4, 4, steps_per_stage=1.5)
    with pytest.raises(ValueError, match=r"min_sum must be an integer in \[1, 2\*\*8\)"):
        reciprocal_divider(SOFTMAX_DEFAULT, 8, min_sum=256)
    assert PipelinedDivider(8, 4, 10, steps_per_stage=4).latency == 1 + 3
    gc.collect()


def _run(dut, beats, p_valid=0.7, p_ready=0.6, seed=0, operands=None):
    """Feed ``beats`` (dicts of the ``i`` payload) with stalls; return the ``o`` payloads
    and, per beat, cycles from its ``i`` handshake to its ``o.valid``."""
    stall = random.Random(seed)
    got, t_in, t_valid = [], [], []
    cycle = [0]
    top = dut if operands is None else operands

    async def clock(ctx):
        while True:
            await ctx.tick()
            cycle[0] += 1

    async def feed(ctx):
        for b in beats:
            while stall.random() > p_valid:
                await ctx.tick()
            ctx.set(top.i.payload, b)
            ctx.set(top.i.valid, 1)
            await ctx.tick().until(top.i.ready)
            t_in.append(cycle[0] - 1)
            ctx.set(top.i.valid, 0)

    async def take(ctx):
        seen = False
        while len(got) < len(beats):
            ready = stall.random() < p_ready
            ctx.set(dut.o.ready, ready)
            _, _, valid, rdy, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and not seen:
                t_valid.append(cycle[0] - 1)
            seen = bool(valid) and not rdy
            if valid and rdy:
                got.append(payload)

    sim = Simulator(top if operands is not None else dut)
    sim.add_clock(1e-8)
    sim.add_process(clock)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run_until(1e-8 * (40 * len(beats) + 200))
    return got, [v - i for i, v in zip(t_in, t_valid)]


@pytest.mark.parametrize("count, steps", [(1, 1), (2, 3), (1, 4), (3, 7)])
def test_division_matches_python_with_stalls(count, steps):
    """Random operands whose quotient fits, edges (divisor 1, dividend 0, largest quotient,
    powers of two), ``count`` lanes and a tag, stalls on both streams."""
    nb, db, qb = 20, 9, 12
    dut = PipelinedDivider(nb, db, qb, count=count, steps_per_stage=steps, tag_shape=unsigned(5))
    rng = random.Random(count * 10 + steps)

    def operand():
        d = rng.choice([1, 2, 3, 1 << (db - 1), (1 << db) - 1, rng.randrange(1, 1 << db)])
        top = min((1 << nb) - 1, d * (1 << qb) - 1)  # largest dividend whose quotient fits
        n = rng.choice([0, top, d, d - 1, 1 << rng.randrange(nb), rng.randrange(top + 1)])
        return min(n, top), d

    ops = [[operand() for _ in range(count)] for _ in range(300)]
    beats = [{"dividend": [n for n, _ in o], "divisor": [d for _, d in o], "tag": t % 32} for t, o in enumerate(ops)]
    got, _ = _run(dut, beats, seed=steps)
    want = [([n // d for n, d in o], t % 32) for t, o in enumerate(ops)]
    assert [([int(x) for x in p.quotient], int(p.tag)) for p in got] == want


def test_latency_and_one_result_a_cycle():
    dut = PipelinedDivider(16, 8, 10, steps_per_stage=3)
    beats = [{"dividend": [1000 + i], "divisor": [7], "tag": 0} for i in range(40)]
    got, lat = _run(dut, beats, p_valid=1.0, p_ready=1.0)
    assert [int(p.quotient[0]) for p in got] == [b["dividend"][0] // 7 for b in beats]
    assert dut.latency == 1 + 4 and set(lat) == {dut.latency}


class _Reciprocal(Elaboratable):
    """The divider fed from a sum ``l`` through :func:`reciprocal_operands_hw`."""

    def __init__(self, spec, sum_bits, min_sum):
        self.div = reciprocal_divider(spec, sum_bits, min_sum)
        self.spec = spec
        self.i = _Stream(sum_bits)
        self.o = self.div.o

    def elaborate(self, platform):
        m = Module()
        m.submodules.div = div = self.div
        n, d = reciprocal_operands_hw(self.i.payload, self.spec)
        m.d.comb += [div.i.payload.dividend[0].eq(n), div.i.payload.divisor[0].eq(d),
                     div.i.valid.eq(self.i.valid), self.i.ready.eq(div.i.ready)]
        return m


class _Stream:
    def __init__(self, bits):
        self.payload, self.valid, self.ready = Signal(bits), Signal(), Signal()


@pytest.mark.parametrize("spec, sum_bits, min_sum", [
    (SOFTMAX_DEFAULT, 26, 1),                 # every sum from one LSB: a 41-bit quotient
    (SOFTMAX_DEFAULT, 26, None),              # the attention normaliser's sums (>= 1.0): 25 bits
    (SoftmaxSpec(prob_frac_bits=8, recip_frac_bits=12), 12, None),
])
def test_reciprocal_equals_the_reference(spec, sum_bits, min_sum):
    """``reciprocal(l)`` of hwgen.numerics for l = the smallest sum, the largest, powers of
    two and their neighbours, and random sums."""
    dut = _Reciprocal(spec, sum_bits, min_sum)
    lo, hi = (min_sum or spec.one), (1 << sum_bits) - 1
    rng = random.Random(sum_bits)
    ls = [lo, lo + 1, hi, hi - 1] + [x for b in range(lo.bit_length(), sum_bits) for x in (1 << b, (1 << b) + 1, (1 << b) - 1)]
    ls += [rng.randrange(lo, hi + 1) for _ in range(150)]
    ls = [x for x in ls if lo <= x <= hi]
    got, _ = _run(dut.div, ls, seed=3, operands=dut)
    assert [int(p.quotient[0]) for p in got] == [int(r) for r in reciprocal(ls, spec)]
