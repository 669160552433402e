"""cocotb testbench of fpga.hdl.gelu.GeluUnit: driver, monitor, model, checker.

Environment: TB_N (beats), TB_LANES, TB_IN, TB_OUT (formats "W,I"), TB_SEED.
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
from hwgen.numerics.gelu import gelu_codes


def _fmt(key: str) -> FixedFormat:
    return FixedFormat(*map(int, os.environ[key].split(",")))


@cocotb.test()
async def random_with_stalls(dut):
    n, lanes = int(os.environ["TB_N"]), int(os.environ["TB_LANES"])
    fi, fo = _fmt("TB_IN"), _fmt("TB_OUT")
    seed = int(os.environ.get("TB_SEED", "0"))
    rng = np.random.default_rng(seed)
    # half of the beats in the table's range (|x| < 6), half over all codes
    x = np.where(rng.random((n, lanes)) < 0.5, to_fixed(rng.uniform(-6, 6, (n, lanes)), fi),
                 rng.integers(fi.qmin, fi.qmax + 1, (n, lanes)))
    edges = [0, fi.qmin, fi.qmax, -1, 1, to_fixed(5.5, fi), to_fixed(-5.5, fi), to_fixed(5.5, fi) - 1]
    for i, e in enumerate(edges):
        x[i, :] = e
    want = gelu_codes(x, fi, fo)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    checker = InOrderChecker(dut._log, "o")
    drv = StreamDriver(dut, "i", dut.clk, p_valid=0.6, rng=random.Random(seed))
    StreamMonitor(dut, "o", dut.clk, lambda w: checker.got(unpack(w, [(fo.width, True)] * lanes)),
                  p_ready=0.6, rng=random.Random(seed + 1))
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    for k in range(n):
        drv.append(pack([(v, fi.width) for v in x[k]]))
        checker.expect(want[k].tolist())
    for _ in range(20 * n + 100):
        await RisingEdge(dut.clk)
        if checker.checked == n:
            break
    assert checker.checked == n, f"only {checker.checked} of {n} beats came out"
    assert checker.errors == 0
