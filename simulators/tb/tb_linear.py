"""cocotb testbench of fpga.hdl.linear.LinearUnit: drivers on ``w`` and ``x``, a monitor
on ``o``, hwgen.numerics.linear as the model, an in-order checker.

Environment: TB_JOBS (output tiles), TB_ROWS, TB_COLS, TB_DEPTH, TB_MAXK, TB_X, TB_W,
TB_B, TB_OUT (formats "W,I"), TB_GELU (0/1), TB_SEED.
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from stream_bfm import InOrderChecker, StreamDriver, StreamMonitor, pack, unpack

from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.linear import linear_codes


def _fmt(key: str) -> FixedFormat:
    return FixedFormat(*map(int, os.environ[key].split(",")))


def _codes(rng, f: FixedFormat, shape, job: int) -> np.ndarray:
    if job == 0:
        return np.full(shape, f.qmax)   # saturation upwards
    if job == 1:
        return np.full(shape, f.qmin)   # most negative codes (product of two: most positive)
    if job == 2:
        return np.zeros(shape, dtype=np.int64)
    return rng.integers(f.qmin, f.qmax + 1, shape)


@cocotb.test()
async def random_tiles_with_stalls(dut):
    env = os.environ
    jobs, rows, cols = int(env["TB_JOBS"]), int(env["TB_ROWS"]), int(env["TB_COLS"])
    depth, max_k, gelu = int(env["TB_DEPTH"]), int(env["TB_MAXK"]), env["TB_GELU"] == "1"
    fx, fw, fb, fo = _fmt("TB_X"), _fmt("TB_W"), _fmt("TB_B"), _fmt("TB_OUT")
    seed = int(env.get("TB_SEED", "0"))
    rng = np.random.default_rng(seed)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    checker = InOrderChecker(dut._log, "o")
    wdrv = StreamDriver(dut, "w", dut.clk, p_valid=0.7, rng=random.Random(seed))
    xdrv = StreamDriver(dut, "x", dut.clk, p_valid=0.7, rng=random.Random(seed + 1))
    StreamMonitor(dut, "o", dut.clk, lambda v: checker.got(unpack(v, [(fo.width, True)] * cols)),
                  p_ready=0.6, rng=random.Random(seed + 2))
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    n_rows = 0
    for job in range(jobs):
        k = max_k if job < 3 else int(rng.integers(1, max_k + 1))
        x = _codes(rng, fx, (rows, k), job)
        w = _codes(rng, fw, (k, cols), job)
        b = _codes(rng, fb, (cols,), job)
        for r in linear_codes(x, w, b, fx, fw, fb, fo, gelu=gelu).tolist():
            checker.expect(r)
            n_rows += 1
        starts = list(range(0, k, depth))
        for t, k0 in enumerate(starts):
            k1 = min(k0 + depth, k)
            for kk in range(k0, k1):
                last = kk == k1 - 1
                wdrv.append(pack([(v, fw.width) for v in w[kk]] + [(v, fb.width) for v in b]
                                 + [(int(last), 1), (int(last and t == len(starts) - 1), 1)]))
                xdrv.append(pack([(v, fx.width) for v in x[:, kk]] + [(int(last), 1)]))
    for _ in range(40 * n_rows * (max_k + rows) + 1000):
        await RisingEdge(dut.clk)
        if checker.checked == n_rows:
            break
    assert checker.checked == n_rows, f"only {checker.checked} of {n_rows} output rows came out"
    dut._log.info("checked %d output rows (%d values)", n_rows, n_rows * cols)
    assert checker.errors == 0
