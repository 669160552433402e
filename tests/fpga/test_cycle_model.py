"""The cycle model (fpga/cost/cycles.py) against instruction cycles recorded on the RTL, and
the per-expert rows it takes from a routing (fpga/cost/routing.py). No simulation here:
the recorded figures are Verilator's (``hwgen simulate``, default configuration, memory
latency 4; ``sim.json`` ``instr_cycles``) of vit-tiny (digits image 3) and m3vit-tiny task 0
(image 0); the RTL tests re-check the model on every run."""

from __future__ import annotations

import numpy as np
import pytest

from fpga.config import AcceleratorConfig
from fpga.cost.cycles import estimate_cycles, linear_cycles
from fpga.cost.routing import RowsOfInstr
from fpga.isa import Instr, Op

CFG = AcceleratorConfig()

# (instruction, rows for register-sized ops, experts used, cycles measured on the RTL)
EXACT = [
    (Instr(Op.LOAD, length=32), 0, None, 45),
    (Instr(Op.LOAD, length=8), 0, None, 21),
    (Instr(Op.LOAD, length=136), 0, None, 149),
    (Instr(Op.STORE, length=2), 0, None, 14),
    (Instr(Op.SET, aux=4), 0, None, 8),
    (Instr(Op.END), 0, None, 6),
    (Instr(Op.ADD, length=136, src1=136), 0, None, 283),
    (Instr(Op.MOE_GATHER, length=17, aux=1, ext_addr=6 | (647 << 16)), 14, None, 221),
    (Instr(Op.MOE_GATHER, length=17, aux=0, ext_addr=6 | (647 << 16)), 0, None, 11),
    (Instr(Op.MOE_COMBINE, aux=6), 14, None, 251),
    (Instr(Op.MOE_COMBINE, aux=6), 0, None, 8),
    (Instr(Op.LINEAR, flags=3, aux=48, src1=96), 0, None, 8),  # an expert without tokens
    # 349 before the pipelined reciprocal (+R = 8), 357 before the gate's registers around it: + 5, as
    # tb_moe_route_engine measured on main's RTL and with the registers (SMALL, 5 token/expert counts)
    (Instr(Op.MOE_ROUTE, length=17, aux=4), 0, 3, 362),
]
# LINEAR (the engine's exact count since the activation store) and ATTENTION: within 2 %
CLOSE = [
    (Instr(Op.LINEAR, length=17, aux=64, src1=192), 0, 1637),
    (Instr(Op.LINEAR, length=1, aux=64, src1=16), 0, 97),
    (Instr(Op.LINEAR, length=16, aux=16, src1=64), 0, 183),
    (Instr(Op.LINEAR, length=17, aux=64, src1=64), 0, 613),
    (Instr(Op.LINEAR, flags=1, length=17, aux=64, src1=256), 0, 2150),
    (Instr(Op.LINEAR, length=17, aux=256, src1=64), 0, 2341),
    (Instr(Op.ATTENTION, length=17, aux=17), 0, 1586),  # 1,626 with the one-cycle divider (-40: the skew no longer waits for the output)
]


@pytest.mark.parametrize("ins, rows, used, measured", EXACT, ids=[f"{i.op.name}-{m}" for i, _, _, m in EXACT])
def test_model_equals_recorded_rtl_cycles(ins, rows, used, measured):
    by_entry = not (ins.op == Op.MOE_GATHER and rows == ins.length)
    assert estimate_cycles(ins, CFG, rows, gather_ended_by_entry=by_entry, experts_used=used) == measured


@pytest.mark.parametrize("ins, rows, measured", CLOSE, ids=[f"{i.op.name}-{m}" for i, _, m in CLOSE])
def test_linear_and_attention_within_two_percent(ins, rows, measured):
    assert abs(estimate_cycles(ins, CFG, rows) - measured) <= 0.02 * measured


def test_linear_is_the_engines_exact_count():
    from fpga.hdl.engine_linear import linear_cycles as engine

    assert linear_cycles(0, 64, 64, CFG) == 1  # M = 0: done the cycle after start, no weights
    for m, n, k in [(17, 192, 64), (129, 576, 192), (5, 32, 300)]:
        assert linear_cycles(m, n, k, CFG) == engine(m, n, k, CFG, latency=4)
    # an expected (fractional) row count lies between the two whole counts
    lo, hi, mid = linear_cycles(16, 64, 64, CFG), linear_cycles(17, 64, 64, CFG), linear_cycles(16.25, 64, 64, CFG)
    assert lo < mid < hi and mid == lo + 0.25 * (hi - lo)


class _E:
    def __init__(self, instr, node="moe", expect_rows=0.0):
        self.instr, self.node, self.expect_rows = instr, node, expect_rows


def test_rows_follow_the_routing_chunk_by_chunk():
    """Expert e gets count(e) rows in chunks of T; the last chunk of the last used expert
    ends at moe_end; uniform expectation without routing."""
    rng = np.random.default_rng(0)
    picks = np.stack([rng.permutation(4)[:2] for _ in range(40)])  # 40 tokens, top-2 of 4
    counts = np.bincount(picks.reshape(-1), minlength=4)
    t = 16
    walk = RowsOfInstr({"moe": picks})
    assert walk(_E(Instr(Op.MOE_ROUTE, length=40, aux=4)))[2] == int(np.count_nonzero(counts))
    for e in range(4):
        for c in range(-(-40 // t)):
            rows, by_entry, _ = walk(_E(Instr(Op.MOE_GATHER, length=t, aux=e), expect_rows=20.0))
            want = max(0, min(t, counts[e] - c * t))
            assert rows == want
            at_end = e == 3 and c * t + want >= counts[e]
            assert by_entry == (want < t and not at_end)
            assert walk(_E(Instr(Op.LINEAR, flags=2)))[0] == want
            assert walk(_E(Instr(Op.MOE_COMBINE)))[0] == want
    uniform = RowsOfInstr(None)
    assert uniform(_E(Instr(Op.MOE_GATHER, length=t), expect_rows=12.5))[0] == 12.5


def test_uniform_rows_are_chunked_like_real_ones():
    """Without an input each expert expects M*k/E rows, gathered in chunks of T: 40 tokens,
    top-2 of 4 experts -> 20 rows an expert -> chunks of 16, 4, 0 rows."""
    walk = RowsOfInstr(None, k=2)
    walk(_E(Instr(Op.MOE_ROUTE, length=40, aux=4)))
    for e in range(4):
        got = [walk(_E(Instr(Op.MOE_GATHER, length=16, aux=e), expect_rows=6.7))[0] for _ in range(3)]
        assert got == [16, 4, 0]
