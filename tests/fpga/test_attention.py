"""The attention unit: constructor checks, a short Amaranth simulation, and the cocotb
testbench on Verilator (bit-exact against hwgen.numerics.attention, >= 1,000 rows)."""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from fpga.hdl.attention import AttentionUnit
from hwgen.fixedpoint import FixedFormat, to_fixed
from hwgen.numerics.attention import attention_codes

F = FixedFormat(32, 10)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="head_dim must be a positive integer"):
        AttentionUnit(0, 4)
    with pytest.raises(TypeError, match="queries must be a positive integer"):
        AttentionUnit(4, 4, queries=2.5)
    with pytest.raises(ValueError, match="outside"):
        AttentionUnit(4, 4, scale=100.0)
    gc.collect()  # the half-built components warn when collected: here, where it is filtered


@pytest.mark.parametrize(
    "d, dv, p, in_fmt, out_fmt, scale",
    [
        (3, 2, 3, F, F, 0.7),
        (2, 3, 1, FixedFormat(16, 6), FixedFormat(8, 2), 1.0),  # one lane; narrow output saturates
        (5, 1, 4, FixedFormat(12, 4), FixedFormat(16, 8), 0.35),
    ],
)
def test_amaranth_simulation_with_stalls(d, dv, p, in_fmt, out_fmt, scale):
    """Amaranth's own simulator, a few groups, random stalls on all three streams."""
    dut = AttentionUnit(d, dv, max_keys=8, queries=p, scale=scale, in_fmt=in_fmt, out_fmt=out_fmt)
    rng = np.random.default_rng(d)
    stall = random.Random(d)
    groups = []
    for _ in range(8):
        nq, nk = int(rng.integers(1, p + 1)), int(rng.integers(1, 9))
        groups.append(tuple(to_fixed(rng.normal(0, 2, s), in_fmt) for s in ((nq, d), (nk, d), (nk, dv))))
    fmts = (in_fmt,) * 3
    want = [r for q, k, v in groups for r in attention_codes(q, k.T, v, fmts, out_fmt, scale=scale).tolist()]
    got = []

    async def feed_q(ctx):
        for q, _, _ in groups:
            for i, row in enumerate(q):
                while stall.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.q.payload, {"data": row.tolist(), "last": int(i == len(q) - 1)})
                ctx.set(dut.q.valid, 1)
                await ctx.tick().until(dut.q.ready)
                ctx.set(dut.q.valid, 0)

    async def feed_kv(ctx):
        for _, k, v in groups:
            for j in range(len(k)):
                while stall.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.kv.payload, {"k": k[j].tolist(), "v": v[j].tolist(), "last": int(j == len(k) - 1)})
                ctx.set(dut.kv.valid, 1)
                await ctx.tick().until(dut.kv.ready)
                ctx.set(dut.kv.valid, 0)

    async def take_o(ctx):
        while len(got) < len(want):
            ctx.set(dut.o.ready, stall.random() < 0.6)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                got.append([int(x) for x in payload])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed_q)
    sim.add_testbench(feed_kv)
    sim.add_testbench(take_o)
    sim.run_until(2e-5)
    assert got == want
