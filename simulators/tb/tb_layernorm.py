"""cocotb testbench of fpga.hdl.layernorm.LayerNormUnit: driver, monitor, model
(hwgen.numerics.layernorm), in-order checker.

Environment: TB_ROWS, TB_MAXN, TB_X, TB_G, TB_B, TB_OUT (formats "W,I"), TB_EPS, TB_SEED.
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from stream_bfm import InOrderChecker, StreamDriver, StreamMonitor, pack, unpack

from hwgen.fixedpoint import FixedFormat, to_fixed
from hwgen.numerics.layernorm import layernorm_codes


def _fmt(key: str) -> FixedFormat:
    return FixedFormat(*map(int, os.environ[key].split(",")))


@cocotb.test()
async def random_rows_with_stalls(dut):
    env = os.environ
    n_rows, max_n, eps = int(env["TB_ROWS"]), int(env["TB_MAXN"]), float(env["TB_EPS"])
    fx, fg, fb, fo = _fmt("TB_X"), _fmt("TB_G"), _fmt("TB_B"), _fmt("TB_OUT")
    seed = int(env.get("TB_SEED", "0"))
    rng = np.random.default_rng(seed)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    checker = InOrderChecker(dut._log, "o")
    drv = StreamDriver(dut, "i", dut.clk, p_valid=0.7, rng=random.Random(seed))
    StreamMonitor(dut, "o", dut.clk, lambda v: checker.got(tuple(unpack(v, [(fo.width, True), (1, False)]))),
                  p_ready=0.6, rng=random.Random(seed + 1))
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    total = 0
    for r in range(n_rows):
        n = max_n if r < 4 else int(rng.integers(1, max_n + 1))
        if r == 0:
            x = np.zeros(n, dtype=np.int64)                     # zero row: variance 0
        elif r == 1:
            x = np.where(np.arange(n) % 2 == 0, fx.qmin, fx.qmax)  # extremes: largest variance
        elif r == 2:
            x = np.full(n, fx.qmin)                               # constant most negative row
        else:
            x = to_fixed(rng.normal(rng.normal(0, 2), rng.uniform(0.01, 4), n), fx)
        g = rng.integers(fg.qmin, fg.qmax + 1, n) if r == 3 else to_fixed(rng.normal(1, 0.5, n), fg)
        b = rng.integers(fb.qmin, fb.qmax + 1, n) if r == 3 else to_fixed(rng.normal(0, 1, n), fb)
        want = layernorm_codes(x, g, b, fx, fg, fb, fo, eps=eps)
        for j in range(n):
            drv.append(pack([(x[j], fx.width), (g[j], fg.width), (b[j], fb.width), (int(j == n - 1), 1)]))
            checker.expect((int(want[j]), int(j == n - 1)))
        total += n
    assert total >= 1000, f"only {total} elements: raise TB_ROWS"
    for _ in range(30 * total + 200 * n_rows + 1000):
        await RisingEdge(dut.clk)
        if checker.checked == total:
            break
    assert checker.checked == total, f"only {checker.checked} of {total} elements came out"
    dut._log.info("checked %d elements in %d rows", total, n_rows)
    assert checker.errors == 0


@cocotb.test()
async def rows_without_stalls_take_the_modelled_cycles(dut):
    """No stalls: a row of D elements every ``2 D + RSQRT_CYCLES`` cycles, the cycle model's
    figure (:func:`fpga.cost.cycles.layernorm_unit_row_cycles`), and still bit-exact."""
    from cocotb.triggers import ReadOnly

    from fpga.cost.cycles import layernorm_unit_row_cycles

    env = os.environ
    n, eps = int(env["TB_MAXN"]), float(env["TB_EPS"])
    fx, fg, fb, fo = _fmt("TB_X"), _fmt("TB_G"), _fmt("TB_B"), _fmt("TB_OUT")
    rng = np.random.default_rng(int(env.get("TB_SEED", "0")) + 11)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    checker = InOrderChecker(dut._log, "o")
    drv = StreamDriver(dut, "i", dut.clk, p_valid=1.0)
    StreamMonitor(dut, "o", dut.clk, lambda v: checker.got(tuple(unpack(v, [(fo.width, True), (1, False)]))), p_ready=1.0)
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    rows = 5
    for _ in range(rows):
        x = to_fixed(rng.normal(0, 2, n), fx)
        g, b = to_fixed(rng.normal(1, 0.5, n), fg), to_fixed(rng.normal(0, 1, n), fb)
        want = layernorm_codes(x, g, b, fx, fg, fb, fo, eps=eps)
        for j in range(n):
            drv.append(pack([(x[j], fx.width), (g[j], fg.width), (b[j], fb.width), (int(j == n - 1), 1)]))
            checker.expect((int(want[j]), int(j == n - 1)))
    row_ends, cycle = [], 0
    while len(row_ends) < rows and cycle < rows * (4 * n + 400):
        await RisingEdge(dut.clk)
        cycle += 1
        await ReadOnly()
        if int(dut.o__valid.value) and int(dut.o__ready.value) and int(dut.o__payload.value) >> fo.width & 1:
            row_ends.append(cycle)
    periods = {b - a for a, b in zip(row_ends, row_ends[1:])}
    dut._log.info("rows of %d elements every %s cycles", n, sorted(periods))
    assert periods == {layernorm_unit_row_cycles(n)}, (periods, layernorm_unit_row_cycles(n))
    await ClockCycles(dut.clk, 2)
    assert checker.checked == rows * n and checker.errors == 0
