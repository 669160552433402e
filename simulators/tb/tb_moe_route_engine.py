"""cocotb testbench of MOE_ROUTE (``fpga.hdl.engine_moe.MoeRouteEngine``) behind the engine
harness (the top's buffer reader, a Python buffer with random stalls: ``tb_moe_expert.Buffer``).

Cases of ``M`` tokens and ``E <= moe_experts`` experts (fewer than configured, a row stride
wider than the score words, one token, tied scores); after each instruction the whole buffer
must equal the ISA's result: the route table (token ``t``'s experts in lanes ``0 .. k-1``,
their gate weights in lanes ``k .. 2k-1``: :func:`hwgen.numerics.topk.route`) and the schedule
(header ``(M k, experts used)``, then the entries of :func:`hwgen.numerics.topk.expert_schedule`
as ``(expert, token, last)`` index fields). Run once without stalls, then with stalls on the
reads (``p_wr`` 1: the engine writes a route word in the cycle its token leaves the top-k
unit, relying on the top's write port being ready for the running engine). The cycles from
``start`` to ``done`` are logged beside :func:`fpga.cost.cycles.route_cycles`, not asserted:
that model is exact at its recorded point (``tests/fpga/test_cycle_model.py``) but off on
other token and expert counts (+2 to +4 cycles with SMALL's 4 experts, -7 to +12 with the
default 16: the scheduler's prefetch gating at expert changes is not in it). On SMALL the
RTL before the gate's registers was off by the same amounts (the registers add 5 cycles in
every case).
Parameters: JSON in ``HWGEN_TB_PARAMS`` (``config``, ``seed``, ``p_rd``, ``p_data``, ``p_wr``).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from engine_tb import engine_args, run_instr, tb_params
from tb_moe_expert import Buffer, Words, _diff, _start

from fpga import isa
from fpga.cost.cycles import route_cycles
from hwgen.fixedpoint import to_fixed
from hwgen.numerics.topk import expert_schedule, route

SRC, TABLE, SCHED = 0, 600, 800


@cocotb.test()
async def route_matches_reference(dut):
    config, p = tb_params()
    lanes, act, n_e, k = config.lanes, config.act_fmt, config.moe_experts, config.moe_k
    w = Words(lanes, act.width)
    rng = np.random.default_rng(p["seed"])
    bits = random.Random(p["seed"] + 1)
    buf = Buffer(dut, random.Random(p["seed"]), 1.0, 1.0, 1.0)
    await _start(dut)
    # (tokens, experts, extra stride words)
    cases = [(17, n_e, 0), (9, n_e - 1, 2), (1, n_e, 0), (12, n_e, 1), (17, min(4, n_e), 0), (30, min(5, n_e), 0)]
    errors: list[str] = []
    tokens = 0
    for stalls in (False, True):
        if stalls:
            buf.set_stalls(p["p_rd"], p["p_data"], p["p_wr"])
        for case, (m, e, extra) in enumerate(cases):
            words = -(-e // lanes)
            stride = words + extra
            scores = to_fixed(rng.normal(0, 2, (m, e)), act)
            if case == 3:
                scores[: m // 2] = rng.integers(-1, 2, (m // 2, e)) << act.frac_bits  # ties
            experts, weights = route(scores, k, act, act, config.moe_normalization)
            mem = {i: bits.getrandbits(lanes * act.width) for i in range(SRC, SRC + m * stride)}
            for t in range(m):  # scores, garbage past E and in the stride's extra words
                for j in range(words):
                    row = [int(v) for v in scores[t, j * lanes:(j + 1) * lanes]]
                    mem[SRC + t * stride + j] = (w.pack(row) | (mem[SRC + t * stride + j]
                                                 >> (act.width * len(row)) << (act.width * len(row))))
            buf.words = dict(mem)
            want = dict(mem)
            for t in range(m):
                want[TABLE + t] = w.pack([int(x) for x in experts[t]] + [int(x) for x in weights[t]])
            schedule = expert_schedule(experts)
            used = len(schedule)
            for i, word in enumerate(isa.schedule_words(schedule, act.width, lanes)):
                want[SCHED + i] = w.pack(word)
            ins = dict(src0=SRC, dst=TABLE, src1=SCHED, length=m, aux=e, ext_addr=stride if extra else 0)
            cycles, _ = await run_instr(dut, engine_args(**ins), limit=100_000)
            errors += _diff(buf.words, want, f"case {case} (M {m}, E {e}, stalls {stalls})")
            dut._log.info("case %d: %d tokens, %d experts (%d used): %d cycles (route_cycles %d), stalls %s",
                          case, m, e, used, cycles, route_cycles(m, e, config, used), stalls)
            tokens += m
    for err in errors[:10]:
        dut._log.error(err)
    assert not errors, errors[0]
    assert tokens >= 100
