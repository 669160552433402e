"""The attention unit: constructor checks, a short Amaranth simulation, and the cocotb
testbench on Verilator and Icarus (bit-exact against hwgen.numerics.attention, >= 1,000 rows)."""

from __future__ import annotations

import gc
import json
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from fpga.hdl.attention import AttentionUnit
from hwgen.fixedpoint import FixedFormat, to_fixed
from hwgen.numerics.attention import attention_codes
from hwgen.numerics.softmax import scale_code
from simulators.runner import run_cocotb

F = FixedFormat(32, 10)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="head_dim must be a positive integer"):
        AttentionUnit(0, 4)
    with pytest.raises(TypeError, match="queries must be a positive integer"):
        AttentionUnit(4, 4, queries=2.5)
    with pytest.raises(ValueError, match="outside"):
        AttentionUnit(4, 4, scale=100.0)
    with pytest.raises(TypeError, match=r"chunk must be a positive integer or None, not 0"):
        AttentionUnit(4, 4, chunk=0)
    with pytest.raises(ValueError, match=r"chunk \(3\) must divide head_dim \(4\)"):
        AttentionUnit(4, 4, chunk=3)
    with pytest.raises(ValueError, match=r"value_dim \(2\) must equal head_dim \(4\) when chunk \(2\) < head_dim"):
        AttentionUnit(4, 2, chunk=2)
    gc.collect()  # the half-built components warn when collected: here, where it is filtered


@pytest.mark.parametrize(
    "d, dv, p, in_fmt, out_fmt, scale, chunk",
    [
        (3, 2, 3, F, F, 0.7, None),
        (2, 3, 1, FixedFormat(16, 6), FixedFormat(8, 2), 1.0, None),  # one lane; narrow output saturates
        (5, 1, 4, FixedFormat(12, 4), FixedFormat(16, 8), 0.35, None),
        (4, 4, 4, F, F, 0.7, 2),                                      # two beats a row
        (6, 6, 3, FixedFormat(16, 6), FixedFormat(8, 2), 1.0, 3),
        (6, 6, 2, FixedFormat(12, 4), FixedFormat(16, 8), 0.35, 1),   # one element a beat
        (4, 4, 2, F, F, None, 2),                                     # run-time scale, a new one each group
        (3, 2, 3, F, F, None, None),
    ],
)
def test_amaranth_simulation_with_stalls(d, dv, p, in_fmt, out_fmt, scale, chunk):
    """Amaranth's own simulator, a few groups, random stalls on all three streams. With
    ``scale=None`` each group has its own ``scale_code``, set while the unit is idle."""
    dut = AttentionUnit(d, dv, max_keys=8, queries=p, scale=scale, in_fmt=in_fmt, out_fmt=out_fmt, chunk=chunk)
    n, kc, vc = dut.beats, dut.chunk, dv // dut.beats
    rng = np.random.default_rng(d)
    stall = random.Random(d)
    groups = []
    for _ in range(8):
        nq, nk = int(rng.integers(1, p + 1)), int(rng.integers(1, 9))
        groups.append(tuple(to_fixed(rng.normal(0, 2, s), in_fmt) for s in ((nq, d), (nk, d), (nk, dv))))
    scales = [scale if scale is not None else float(rng.choice([0.125, 0.5, 1.3, -0.4])) for _ in groups]
    fmts = (in_fmt,) * 3
    want = [r for (q, k, v), s in zip(groups, scales) for r in attention_codes(q, k.T, v, fmts, out_fmt, scale=s).tolist()]
    got = []

    def last_bit(is_last, c):  # `last` counts on a row's final beat only: random before it
        return int(is_last) if c == n - 1 else int(stall.random() < 0.5)

    async def feed_q(ctx):
        rows_before = 0
        for (q, _, _), s in zip(groups, scales):
            if scale is None:  # the unit is idle once the earlier groups' rows are out
                while len(got) < rows_before:
                    await ctx.tick()
                ctx.set(dut.scale_code, scale_code(s))
            for i, row in enumerate(q):
                for c in range(n):
                    while stall.random() < 0.3:
                        await ctx.tick()
                    ctx.set(dut.q.payload, {"data": row[c * kc:(c + 1) * kc].tolist(), "last": last_bit(i == len(q) - 1, c)})
                    ctx.set(dut.q.valid, 1)
                    await ctx.tick().until(dut.q.ready)
                    ctx.set(dut.q.valid, 0)
            rows_before += len(q)

    async def feed_kv(ctx):
        for _, k, v in groups:
            for j in range(len(k)):
                for c in range(n):
                    while stall.random() < 0.3:
                        await ctx.tick()
                    ctx.set(dut.kv.payload, {"k": k[j][c * kc:(c + 1) * kc].tolist(), "v": v[j][c * vc:(c + 1) * vc].tolist(),
                                             "last": last_bit(j == len(k) - 1, c)})
                    ctx.set(dut.kv.valid, 1)
                    await ctx.tick().until(dut.kv.ready)
                    ctx.set(dut.kv.valid, 0)

    async def take_o(ctx):
        row = []
        while len(got) < len(want):
            ctx.set(dut.o.ready, stall.random() < 0.6)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                row += [int(x) for x in payload]
                if len(row) == dv:
                    got.append(row)
                    row = []

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed_q)
    sim.add_testbench(feed_kv)
    sim.add_testbench(take_o)
    sim.run_until(2e-5 * n * (2 if scale is None else 1))
    assert got == want


@pytest.mark.rtl
@pytest.mark.parametrize(
    "d, dv, p, max_keys, in_fmt, out_fmt, scale, chunk, runtime_scale",
    [
        (4, 4, 4, 16, F, F, 0.5, None, False),                                  # Edge-MoE: 4 query lanes, fixed<32,10>
        (2, 3, 1, 8, FixedFormat(16, 6), FixedFormat(8, 2), 1.0, None, False),  # one lane; narrow output saturates
        (8, 8, 4, 16, F, F, 0.35, 4, False),                                    # two beats a row
        (8, 8, 4, 12, F, F, 0.125, 2, True),    # four beats a row; scale_code port, changed every 10 groups
    ],
    ids=["4lanes-fixed32", "1lane-narrow", "4lanes-chunk4", "4lanes-chunk2-runtime-scale"],
)
def test_cocotb(tmp_path, simulator, d, dv, p, max_keys, in_fmt, out_fmt, scale, chunk, runtime_scale):
    """Random groups with stalls (>= 1,000 query rows), then rows leaving one per cycle."""
    dut = AttentionUnit(d, dv, max_keys=max_keys, queries=p, scale=None if runtime_scale else scale,
                        in_fmt=in_fmt, out_fmt=out_fmt, chunk=chunk)
    params = {"head_dim": d, "value_dim": dv, "queries": p, "max_keys": max_keys, "scale": scale,
              "in_fmt": str(in_fmt), "out_fmt": str(out_fmt), "rows": 1000, "seed": d,
              "p_valid": 0.7, "p_ready": 0.6, "chunk": chunk, "runtime_scale": runtime_scale}
    run = run_cocotb(dut, "tb_attention", build_dir=tmp_path, simulator=simulator,
                     extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})
    assert run == 2
