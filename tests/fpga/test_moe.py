"""The MoE routing units: constructor checks, short Amaranth simulations, and the cocotb
testbenches on Verilator and Icarus (bit-exact against hwgen.numerics.topk, >= 1,000
tokens each)."""

from __future__ import annotations

import gc
import json
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from fpga.hdl.moe import ExpertScheduler, TopKUnit
from hwgen.fixedpoint import FixedFormat, to_fixed
from hwgen.numerics.topk import NORMALIZATIONS, expert_schedule, route
from simulators.runner import run_cocotb

F = FixedFormat(32, 10)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(ValueError, match="k must be at most num_experts"):
        TopKUnit(4, 5)
    with pytest.raises(ValueError, match="supported: softmax_then_topk"):
        TopKUnit(4, 2, normalization="sparsemax")
    with pytest.raises(TypeError, match="max_tokens must be a positive integer"):
        ExpertScheduler(4, 2, 0)
    gc.collect()  # the half-built components warn when collected: here, where it is filtered


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_topk_amaranth_simulation(normalization):
    n_e, k = 5, 2
    dut = TopKUnit(n_e, k, F, FixedFormat(16, 2), normalization)
    rng = np.random.default_rng(1)
    stall = random.Random(1)
    scores = to_fixed(rng.normal(0, 1, (30, n_e)), F)
    scores[:8] = rng.integers(-1, 2, (8, n_e))  # ties
    experts, weights = route(scores, k, F, FixedFormat(16, 2), normalization)
    want = [(e.tolist(), w.tolist()) for e, w in zip(experts, weights)]
    got = []

    async def feed(ctx):
        for row in scores:
            for s in row:
                while stall.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.scores.payload, int(s))
                ctx.set(dut.scores.valid, 1)
                await ctx.tick().until(dut.scores.ready)
                ctx.set(dut.scores.valid, 0)

    async def take(ctx):
        while len(got) < len(want):
            ctx.set(dut.o.ready, stall.random() < 0.6)
            _, _, valid, ready, p = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                got.append(([int(x) for x in p.experts], [int(x) for x in p.weights]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run_until(1e-5)
    assert got == want


def test_scheduler_amaranth_simulation():
    n_e, k, n_tok = 6, 2, 12
    dut = ExpertScheduler(n_e, k, n_tok)
    rng = np.random.default_rng(2)
    stall = random.Random(2)
    images = [np.array([rng.choice(n_e, k, replace=False) for _ in range(int(rng.integers(1, n_tok + 1)))]) for _ in range(4)]
    want = [(e, t, int(i == len(ts) - 1)) for img in images for e, ts in expert_schedule(img) for i, t in enumerate(ts)]
    want_pf = [e for img in images for e, _ in expert_schedule(img)]
    got, got_pf = [], []

    async def feed(ctx):
        for img in images:
            for i, row in enumerate(img):
                while stall.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.route.payload, {"experts": row.tolist(), "last": int(i == len(img) - 1)})
                ctx.set(dut.route.valid, 1)
                await ctx.tick().until(dut.route.ready)
                ctx.set(dut.route.valid, 0)

    async def take(ctx):
        while len(got) < len(want) or len(got_pf) < len(want_pf):
            ctx.set(dut.schedule.ready, stall.random() < 0.6)
            ctx.set(dut.prefetch.ready, stall.random() < 0.5)
            _, _, sv, sr, sp, pv, pr, pp = await ctx.tick().sample(
                dut.schedule.valid, dut.schedule.ready, dut.schedule.payload,
                dut.prefetch.valid, dut.prefetch.ready, dut.prefetch.payload)
            if sv and sr:
                got.append((int(sp.expert), int(sp.token), int(sp.last)))
            if pv and pr:
                got_pf.append(int(pp))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run_until(2e-5)
    assert got == want and got_pf == want_pf


@pytest.mark.rtl
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_topk_cocotb(tmp_path, simulator, normalization):
    """8 experts, top-2, 1,000 tokens (edge cases first) with stalls on both streams."""
    n_e, k, wf = 8, 2, FixedFormat(16, 2)
    params = {"num_experts": n_e, "k": k, "score_fmt": str(F), "weight_fmt": str(wf),
              "normalization": normalization, "tokens": 1000, "seed": NORMALIZATIONS.index(normalization),
              "p_valid": 0.7, "p_ready": 0.6}
    run_cocotb(TopKUnit(n_e, k, F, wf, normalization), "tb_moe", build_dir=tmp_path, simulator=simulator,
               testcase="topk_matches_reference", extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})


@pytest.mark.rtl
def test_scheduler_cocotb(tmp_path, simulator):
    """8 experts, top-2, images of up to 16 tokens, >= 1,000 tokens; double-buffering order."""
    n_e, k, n_tok = 8, 2, 16
    params = {"num_experts": n_e, "k": k, "max_tokens": n_tok, "tokens": 1000, "seed": 5,
              "p_valid": 0.7, "p_ready": 0.6}
    run_cocotb(ExpertScheduler(n_e, k, n_tok), "tb_moe", build_dir=tmp_path, simulator=simulator,
               testcase="schedule_matches_reference", extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})


@pytest.mark.rtl
@pytest.mark.slow
def test_route_engine_cocotb(tmp_path):
    """MOE_ROUTE behind the top's buffer reader (Verilator): route table and schedule bit-exact
    against hwgen.numerics.topk with fewer experts than configured, a row stride, one token and
    ties; without stalls, then random stalls on the reads (not on the writes: the engine
    writes a route word in the cycle its token leaves the top-k unit, relying on the top's
    write port, which is always ready for the running engine -- ``fpga/hdl/top.py``)."""
    from fpga.config import SMALL, AcceleratorConfig
    from fpga.hdl.engine_moe import MoeRouteEngine
    from fpga.hdl.top import ENGINE_ADDR_BITS
    from simulators.engine_harness import EngineHarness

    config = AcceleratorConfig(**SMALL)  # 4 experts, top-2
    params = {"config": config.to_dict(), "seed": 7, "p_rd": 0.7, "p_data": 0.6, "p_wr": 1.0}
    dut = EngineHarness(MoeRouteEngine(config, ENGINE_ADDR_BITS), ENGINE_ADDR_BITS, config.mem_port_bits)
    run_cocotb(dut, "tb_moe_route_engine", build_dir=tmp_path, extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})
