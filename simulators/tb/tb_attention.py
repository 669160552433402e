"""cocotb testbench of ``fpga.hdl.attention.AttentionUnit`` against ``hwgen.numerics.attention``.

Parameters come as JSON in ``HWGEN_TB_PARAMS`` (the pytest file sets them to those the
Verilog was built with): head_dim, value_dim, queries, max_keys, scale, in_fmt,
out_fmt, rows (random query rows), seed, p_valid, p_ready.

Driver (q, kv) -> DUT -> monitor (o) -> in-order checker against the model, which is
hwgen's fixed-point attention run on each group's codes.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.attention import attention_codes

from stream_bfm import InOrderChecker, StreamDriver, StreamMonitor, pack, unpack


def _params():
    p = json.loads(os.environ["HWGEN_TB_PARAMS"])
    p["in_fmt"], p["out_fmt"] = FixedFormat.parse(p["in_fmt"]), FixedFormat.parse(p["out_fmt"])
    return p


class AttentionModel:
    """The expected output rows of a group: hwgen's fixed-point attention."""

    def __init__(self, p):
        self.p = p

    def rows(self, q, k, v):
        f = self.p["in_fmt"]
        out = attention_codes(q, k.T, v, (f, f, f), self.p["out_fmt"], scale=self.p["scale"])
        return [tuple(int(x) for x in r) for r in out]


def _groups(p, rng: np.random.Generator):
    """Edge cases first, then random groups until ``rows`` query rows."""
    f, d, dv, nq, nk = p["in_fmt"], p["head_dim"], p["value_dim"], p["queries"], p["max_keys"]
    lo, hi = f.qmin, f.qmax
    full = lambda shape, x: np.full(shape, x, dtype=np.int64)  # noqa: E731
    yield full((nq, d), 0), full((nk, d), 0), full((nk, dv), 0)  # zero
    yield full((1, d), 0), full((1, d), 0), full((1, dv), hi)  # one key
    yield full((nq, d), hi), full((nk, d), hi), full((nk, dv), lo)  # saturated logits, most negative v
    yield full((nq, d), lo), full((nk, d), hi), full((nk, dv), hi)  # most negative logits
    q = np.array([[hi] * d, [lo] * d, [0] * d, [1] * d][:nq])
    k = rng.integers(lo, hi, (nk, d), endpoint=True)
    yield q, k, rng.integers(lo, hi, (nk, dv), endpoint=True)  # full-range codes
    k = np.tile(rng.integers(-(1 << f.frac_bits), 1 << f.frac_bits, (1, d)), (nk, 1))
    yield rng.integers(-(1 << f.frac_bits), 1 << f.frac_bits, (nq, d)), k, rng.integers(lo, hi, (nk, dv))  # equal logits
    rows = 0
    while rows < p["rows"]:
        n_q, n_k = int(rng.integers(1, nq + 1)), int(rng.integers(1, nk + 1))
        kind = rng.random()
        if kind < 0.8:  # realistic: values of a few units, logits spread over a few units
            sd = float(rng.choice([0.5, 1.0, 2.0, 4.0]))
            mk = lambda shape: np.clip(np.floor(rng.normal(0, sd, shape) * 2.0**f.frac_bits + 0.5), lo, hi).astype(np.int64)  # noqa: E731
        else:  # any code at all
            mk = lambda shape: rng.integers(lo, hi, shape, endpoint=True)  # noqa: E731
        yield mk((n_q, d)), mk((n_k, d)), mk((n_k, dv))
        rows += n_q


@cocotb.test()
async def attention_matches_reference(dut):
    p = _params()
    f, w_out, dv = p["in_fmt"], p["out_fmt"].width, p["value_dim"]
    rng = np.random.default_rng(p["seed"])
    prng = random.Random(p["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    q_drv = StreamDriver(dut, "q", dut.clk, p["p_valid"], prng)
    kv_drv = StreamDriver(dut, "kv", dut.clk, p["p_valid"], prng)
    checker = InOrderChecker(dut._log, "o")
    mon = StreamMonitor(dut, "o", dut.clk, lambda word: checker.got(tuple(unpack(word, [(w_out, True)] * dv))),
                        p["p_ready"], prng)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    model = AttentionModel(p)
    n_rows = 0
    for q, k, v in _groups(p, rng):
        for row in model.rows(q, k, v):
            checker.expect(row)
        for i, row in enumerate(q):
            q_drv.append(pack([(x, f.width) for x in row] + [(i == len(q) - 1, 1)]))
        for j in range(len(k)):
            kv_drv.append(pack([(x, f.width) for x in k[j]] + [(x, f.width) for x in v[j]] + [(j == len(k) - 1, 1)]))
        n_rows += len(q)

    await _drain(dut, mon, n_rows)
    dut._log.info("attention: %d rows checked in %d cycles, %d errors", checker.checked, mon.cycle, checker.errors)
    assert mon.received == n_rows, f"received {mon.received} of {n_rows} rows"
    assert checker.checked == n_rows
    assert checker.errors == 0


@cocotb.test()
async def attention_rows_leave_one_per_cycle(dut):
    """Without stalls, the rows of a group leave on consecutive cycles (the skew)."""
    from cocotb.simtime import get_sim_time

    p = _params()
    f, w_out, d, dv, nq = p["in_fmt"], p["out_fmt"].width, p["head_dim"], p["value_dim"], p["queries"]
    rng = np.random.default_rng(p["seed"] + 7)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    q_drv = StreamDriver(dut, "q", dut.clk, 1.0)
    kv_drv = StreamDriver(dut, "kv", dut.clk, 1.0)
    checker = InOrderChecker(dut._log, "o")
    times: list[float] = []

    def on_row(word):
        times.append(get_sim_time("ns"))
        checker.got(tuple(unpack(word, [(w_out, True)] * dv)))

    mon = StreamMonitor(dut, "o", dut.clk, on_row, 1.0)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    model = AttentionModel(p)
    n_groups, n_k = 8, p["max_keys"]
    for _ in range(n_groups):
        q, k, v = (np.floor(rng.normal(0, 1, s) * 2.0**f.frac_bits).astype(np.int64) for s in ((nq, d), (n_k, d), (n_k, dv)))
        for row in model.rows(q, k, v):
            checker.expect(row)
        for i, row in enumerate(q):
            q_drv.append(pack([(x, f.width) for x in row] + [(i == nq - 1, 1)]))
        for j in range(n_k):
            kv_drv.append(pack([(x, f.width) for x in k[j]] + [(x, f.width) for x in v[j]] + [(j == n_k - 1, 1)]))
    await _drain(dut, mon, n_groups * nq)
    gaps = [times[g * nq + i + 1] - times[g * nq + i] for g in range(n_groups) for i in range(nq - 1)]
    period = (times[-1] - times[nq - 1]) / (n_groups - 1) / 10
    dut._log.info("rows of a group %s ns apart; %.1f cycles per group of %d queries x %d keys", sorted(set(gaps)), period, nq, n_k)
    assert mon.received == n_groups * nq
    assert all(g == 10 for g in gaps)
    assert checker.errors == 0


async def _drain(dut, mon, n_rows):
    for _ in range(200 * n_rows + 1000):
        await RisingEdge(dut.clk)
        if mon.received >= n_rows:
            break
    await ClockCycles(dut.clk, 20)  # nothing extra may follow
