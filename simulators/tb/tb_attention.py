"""cocotb testbench of ``fpga.hdl.attention.AttentionUnit`` against ``hwgen.numerics.attention``.

Parameters come as JSON in ``HWGEN_TB_PARAMS`` (the pytest file sets them to those the
Verilog was built with): head_dim, value_dim, queries, max_keys, scale, in_fmt,
out_fmt, rows (random query rows), seed, p_valid, p_ready; optional: chunk (elements a
beat, default head_dim), runtime_scale (the DUT was built with ``scale=None``: drive its
``scale_code`` port, changing the scale every few groups once the unit is idle).

Driver (q, kv: ``F = head_dim // chunk`` beats a row, ``last`` random on the beats where
the unit must ignore it) -> DUT -> monitor (o, beats reassembled into rows) -> in-order
checker against the model, which is hwgen's fixed-point attention run on each group's
codes.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from fpga.cost.cycles import attention_unit_first_output, attention_unit_group_cycles, attention_unit_hold_stall
from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.attention import attention_codes
from hwgen.numerics.softmax import scale_code

from stream_bfm import InOrderChecker, StreamDriver, StreamMonitor, pack, unpack


def _params():
    p = json.loads(os.environ["HWGEN_TB_PARAMS"])
    p["in_fmt"], p["out_fmt"] = FixedFormat.parse(p["in_fmt"]), FixedFormat.parse(p["out_fmt"])
    p["chunk"] = p.get("chunk") or p["head_dim"]
    p["beats"] = p["head_dim"] // p["chunk"]
    p.setdefault("runtime_scale", False)
    return p


def _q_beats(p, row, last: bool, prng: random.Random):
    """A query row as F packed beats; ``last`` on the final one, random bits before it."""
    f, ch, n = p["in_fmt"], p["chunk"], p["beats"]
    return [pack([(x, f.width) for x in row[c * ch:(c + 1) * ch]]
                 + [(last if c == n - 1 else prng.random() < 0.5, 1)]) for c in range(n)]


def _kv_beats(p, k, v, last: bool, prng: random.Random):
    """A key and its value as F packed beats ``{k[chunk], v[Vc], last}``."""
    f, n = p["in_fmt"], p["beats"]
    kc, vc = p["chunk"], p["value_dim"] // n
    return [pack([(x, f.width) for x in k[c * kc:(c + 1) * kc]] + [(x, f.width) for x in v[c * vc:(c + 1) * vc]]
                 + [(last if c == n - 1 else prng.random() < 0.5, 1)]) for c in range(n)]


class RowAssembler:
    """Monitor callback: collects F output beats into one row and hands it on."""

    def __init__(self, p, sink):
        self.w, self.vc, self.n = p["out_fmt"].width, p["value_dim"] // p["beats"], p["beats"]
        self.sink, self.buf, self.beats = sink, [], 0

    def __call__(self, word):
        self.buf += unpack(word, [(self.w, True)] * self.vc)
        self.beats += 1
        if self.beats == self.n:
            self.sink(tuple(self.buf))
            self.buf, self.beats = [], 0


class HandshakeLog:
    """Cycle numbers (counted from its start) of the accepted beats of a DUT stream."""

    def __init__(self, dut, name: str, clk):
        self.valid, self.ready = getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready")
        self.clk, self.cycles, self.cycle = clk, [], 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                self.cycles.append(self.cycle)


class AttentionModel:
    """The expected output rows of a group: hwgen's fixed-point attention."""

    def __init__(self, p):
        self.p = p

    def rows(self, q, k, v, scale=None):
        f = self.p["in_fmt"]
        scale = self.p["scale"] if scale is None else scale
        out = attention_codes(q, k.T, v, (f, f, f), self.p["out_fmt"], scale=scale)
        return [tuple(int(x) for x in r) for r in out]


#: Scales the run-time-scale configuration switches between (in the scale code's range).
RUNTIME_SCALES = [0.125, 0.35, 1.0, 2.5, -0.6]


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
    n_beats = p["beats"]
    rng = np.random.default_rng(p["seed"])
    prng = random.Random(p["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    scale = p["scale"]
    if p["runtime_scale"]:
        dut.scale_code.value = scale_code(scale)
    q_drv = StreamDriver(dut, "q", dut.clk, p["p_valid"], prng)
    kv_drv = StreamDriver(dut, "kv", dut.clk, p["p_valid"], prng)
    checker = InOrderChecker(dut._log, "o")
    mon = StreamMonitor(dut, "o", dut.clk, RowAssembler(p, checker.got), p["p_ready"], prng)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    model = AttentionModel(p)
    n_rows, scales = 0, {scale}
    for g, (q, k, v) in enumerate(_groups(p, rng)):
        if p["runtime_scale"] and g % 10 == 9:  # a new scale code, once the unit is idle
            await _drain(dut, mon, n_rows * n_beats)
            scale = float(rng.choice(RUNTIME_SCALES))
            dut.scale_code.value = scale_code(scale)
            scales.add(scale)
        for row in model.rows(q, k, v, scale):
            checker.expect(row)
        for i, row in enumerate(q):
            for beat in _q_beats(p, row, i == len(q) - 1, prng):
                q_drv.append(beat)
        for j in range(len(k)):
            for beat in _kv_beats(p, k[j], v[j], j == len(k) - 1, prng):
                kv_drv.append(beat)
        n_rows += len(q)

    await _drain(dut, mon, n_rows * n_beats)
    dut._log.info("attention: %d rows (%d beats of %d) checked in %d cycles, %d scales, %d errors",
                  checker.checked, mon.received, p["value_dim"] // n_beats, mon.cycle, len(scales), checker.errors)
    assert mon.received == n_rows * n_beats, f"received {mon.received} of {n_rows * n_beats} beats"
    assert checker.checked == n_rows
    assert checker.errors == 0


@cocotb.test()
async def attention_rows_leave_one_per_cycle(dut):
    """Without stalls: one kv beat a cycle, the rows of a group leave back to back (one o
    beat a cycle, the skew), the first (K + 1)·F + R cycles after the group's first kv beat
    (R: the reciprocal's pipeline), and a group of P queries and K keys takes F·(K + 2P)
    cycles -- plus, in a group after another, one wait of R - 2P·F cycles if R is longer than
    a lane's turn around (then one kv gap of that many cycles)."""
    p = _params()
    f, d, dv, nq, n_beats = p["in_fmt"], p["head_dim"], p["value_dim"], p["queries"], p["beats"]
    rng = np.random.default_rng(p["seed"] + 7)
    prng = random.Random(p["seed"] + 7)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    if p["runtime_scale"]:
        dut.scale_code.value = scale_code(p["scale"])
    q_drv = StreamDriver(dut, "q", dut.clk, 1.0)
    kv_drv = StreamDriver(dut, "kv", dut.clk, 1.0)
    checker = InOrderChecker(dut._log, "o")
    mon = StreamMonitor(dut, "o", dut.clk, RowAssembler(p, checker.got), 1.0)
    kv_log, o_log = HandshakeLog(dut, "kv", dut.clk), HandshakeLog(dut, "o", dut.clk)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    model = AttentionModel(p)
    n_groups, n_k = 8, p["max_keys"]
    for _ in range(n_groups):
        q, k, v = (np.floor(rng.normal(0, 1, s) * 2.0**f.frac_bits).astype(np.int64) for s in ((nq, d), (n_k, d), (n_k, dv)))
        for row in model.rows(q, k, v):
            checker.expect(row)
        for i, row in enumerate(q):
            for beat in _q_beats(p, row, i == nq - 1, prng):
                q_drv.append(beat)
        for j in range(n_k):
            for beat in _kv_beats(p, k[j], v[j], j == n_k - 1, prng):
                kv_drv.append(beat)
    await _drain(dut, mon, n_groups * nq * n_beats)
    assert mon.received == n_groups * nq * n_beats
    o_groups = [o_log.cycles[g * nq * n_beats:(g + 1) * nq * n_beats] for g in range(n_groups)]
    kv_groups = [kv_log.cycles[g * n_k * n_beats:(g + 1) * n_k * n_beats] for g in range(n_groups)]
    o_gaps = {b - a for c in o_groups for a, b in zip(c, c[1:])}
    kv_gaps = {b - a for c in kv_groups for a, b in zip(c, c[1:])}
    periods = {b[0] - a[0] for a, b in zip(o_groups, o_groups[1:])}
    latency = {o[0] - kv[0] for o, kv in zip(o_groups, kv_groups)}
    dut._log.info("F=%d, %d queries x %d keys: o beats of a group %s cycles apart, kv beats %s apart, "
                  "first o beat %s cycles after the first kv beat, %s cycles per group",
                  n_beats, nq, n_k, sorted(o_gaps), sorted(kv_gaps), sorted(latency), sorted(periods))
    stall = attention_unit_hold_stall(nq, n_beats)  # the cycle model's facts (fpga/cost/cycles.py)
    assert o_gaps <= {1} and kv_gaps <= ({1, stall + 1} if stall else {1})
    first = [o[0] - kv[0] for o, kv in zip(o_groups, kv_groups)]
    assert first[0] == attention_unit_first_output(n_k, n_beats)
    assert set(first[1:]) == {attention_unit_first_output(n_k, n_beats, stall=stall)}
    assert periods == {attention_unit_group_cycles(nq, n_k, n_beats)}
    assert checker.errors == 0


async def _drain(dut, mon, n_beats):
    for _ in range(200 * n_beats + 1000):
        await RisingEdge(dut.clk)
        if mon.received >= n_beats:
            break
    await ClockCycles(dut.clk, 20)  # nothing extra may follow
