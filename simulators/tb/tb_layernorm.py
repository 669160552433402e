"""cocotb testbench of fpga.hdl.layernorm.LayerNormUnit: driver, monitor, model
(hwgen.numerics.layernorm), in-order checker.

Batches of rows: per batch a row length ``n`` (the ``n`` input), gamma and beta written
through ``param``, then rows of ``ceil(n / lanes)`` words on ``i`` (lanes past ``n`` hold
garbage, which must not matter), random stalls on ``i`` and ``o``. The first batch has
a zero row, a row of extremes (largest variance) and a constant most negative row; the
second full-range gamma and beta.

Environment: TB_ROWS, TB_MAXN, TB_LANES, TB_X, TB_G, TB_B, TB_OUT (formats "W,I"),
TB_EPS, TB_SEED.
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


def _rows(rng: np.random.Generator, batch: int, count: int, n: int, fx: FixedFormat) -> np.ndarray:
    x = to_fixed(rng.normal(rng.normal(0, 2), rng.uniform(0.01, 4), (count, n)), fx)
    if batch == 0:
        x[0] = 0                                                  # variance 0
        x[1] = np.where(np.arange(n) % 2 == 0, fx.qmin, fx.qmax)  # extremes: largest variance
        x[2] = fx.qmin                                            # constant most negative row
    return x


@cocotb.test()
async def random_rows_with_stalls(dut):
    env = os.environ
    n_rows, max_n, lanes, eps = int(env["TB_ROWS"]), int(env["TB_MAXN"]), int(env["TB_LANES"]), float(env["TB_EPS"])
    fx, fg, fb, fo = _fmt("TB_X"), _fmt("TB_G"), _fmt("TB_B"), _fmt("TB_OUT")
    seed = int(env.get("TB_SEED", "0"))
    rng = np.random.default_rng(seed)
    garbage = random.Random(seed + 2)
    addr_bits = (-(-max_n // lanes) - 1).bit_length()

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.param.value = 0
    checker = InOrderChecker(dut._log, "o")
    drv = StreamDriver(dut, "i", dut.clk, p_valid=0.7, rng=random.Random(seed))
    StreamMonitor(dut, "o", dut.clk,
                  lambda v: checker.got(tuple(unpack(v, [(fo.width, True)] * lanes + [(1, False)]))),
                  p_ready=0.6, rng=random.Random(seed + 1))
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    rows_done = elems = words = batch = 0
    while rows_done < n_rows:
        n = max_n if batch < 2 else int(rng.integers(1, max_n + 1))
        count = min(int(rng.integers(3, 9)), n_rows - rows_done) if batch else 3
        w = -(-n // lanes)
        full = batch == 1
        g = rng.integers(fg.qmin, fg.qmax + 1, n) if full else to_fixed(rng.normal(1, 0.5, n), fg)
        b = rng.integers(fb.qmin, fb.qmax + 1, n) if full else to_fixed(rng.normal(0, 1, n), fb)
        x = _rows(rng, batch, count, n, fx)
        want = layernorm_codes(x, g, b, fx, fg, fb, fo, eps=eps)
        # the unit is empty: new n, gamma and beta (one word a cycle)
        await RisingEdge(dut.clk)
        dut.n.value = n
        pad = lambda v: list(v) + [0] * (w * lanes - n)  # noqa: E731
        gw, bw = pad(g), pad(b)
        for k in range(w):
            dut.param.value = pack([(1, 1), (1, 1), (k, addr_bits)]
                                   + [(v, fg.width) for v in gw[k * lanes:(k + 1) * lanes]]
                                   + [(v, fb.width) for v in bw[k * lanes:(k + 1) * lanes]])
            await RisingEdge(dut.clk)
        dut.param.value = 0
        for t in range(count):
            xs = list(x[t]) + [garbage.randrange(fx.qmin, fx.qmax + 1) for _ in range(w * lanes - n)]
            ys = list(want[t]) + [0] * (w * lanes - n)
            for k in range(w):
                drv.append(pack([(v, fx.width) for v in xs[k * lanes:(k + 1) * lanes]]))
                checker.expect(tuple(int(v) for v in ys[k * lanes:(k + 1) * lanes]) + (int(k == w - 1),))
        words += count * w
        for _ in range(40 * count * w + 300 * count + 100):
            await RisingEdge(dut.clk)
            if checker.checked == words:
                break
        assert checker.checked == words, f"batch {batch} (n = {n}): {checker.checked} of {words} words came out"
        rows_done += count
        elems += count * n
        batch += 1
    assert elems >= 1000, f"only {elems} elements: raise TB_ROWS"
    dut._log.info("checked %d elements (%d words) in %d rows, %d batches", elems, words, n_rows, batch)
    assert checker.errors == 0
