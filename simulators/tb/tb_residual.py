"""cocotb testbench of fpga.hdl.residual.ResidualAdd: driver, monitor, model, checker.

Environment: TB_N (beats), TB_LANES, TB_A, TB_B, TB_OUT (formats as "W,I"), TB_SEED.
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
from hwgen.numerics.residual import residual_codes


def _fmt(key: str) -> FixedFormat:
    return FixedFormat(*map(int, os.environ[key].split(",")))


def _vectors(rng: np.random.Generator, n: int, lanes: int, f: FixedFormat) -> np.ndarray:
    """Random codes with edge cases first: zero, most negative, most positive."""
    v = rng.integers(f.qmin, f.qmax + 1, size=(n, lanes), dtype=np.int64)
    edge = [0, f.qmin, f.qmax, f.qmin, f.qmax, -1, 1]
    for i, e in enumerate(edge[: n]):
        v[i, :] = e
    return v


@cocotb.test()
async def random_with_stalls(dut):
    n, lanes = int(os.environ["TB_N"]), int(os.environ["TB_LANES"])
    fa, fb, fo = _fmt("TB_A"), _fmt("TB_B"), _fmt("TB_OUT")
    seed = int(os.environ.get("TB_SEED", "0"))
    rng = np.random.default_rng(seed)
    a = _vectors(rng, n, lanes, fa)
    b = _vectors(rng, n, lanes, fb)
    b[3:5] = b[1:3]  # both operands at the extremes: saturation both ways
    want = residual_codes(a, b, fa, fb, fo)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    checker = InOrderChecker(dut._log, "o")
    drv = StreamDriver(dut, "i", dut.clk, p_valid=0.6, rng=random.Random(seed))
    StreamMonitor(dut, "o", dut.clk, lambda w: checker.got(unpack(w, [(fo.width, True)] * lanes)),
                  p_ready=0.6, rng=random.Random(seed + 1))
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    for k in range(n):
        drv.append(pack([(x, fa.width) for x in a[k]] + [(x, fb.width) for x in b[k]]))
        checker.expect(want[k].tolist())
    for _ in range(20 * n + 100):
        await RisingEdge(dut.clk)
        if checker.checked == n:
            break
    assert checker.checked == n, f"only {checker.checked} of {n} beats came out"
    assert checker.errors == 0
