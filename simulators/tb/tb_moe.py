"""cocotb testbenches of ``fpga.hdl.moe`` against ``hwgen.numerics.topk``.

Parameters come as JSON in ``HWGEN_TB_PARAMS``: num_experts, k, score_fmt,
weight_fmt, normalization, max_tokens, tokens (random vectors), seed, p_valid, p_ready.

* ``topk_matches_reference`` (toplevel: ``TopKUnit``): scores driver -> DUT -> monitor ->
  in-order checker of (experts, weights) against ``hwgen.numerics.topk.route``.
* ``schedule_matches_reference`` (toplevel: ``ExpertScheduler``): routing driver ->
  DUT -> schedule and prefetch monitors -> in-order checkers against
  ``expert_schedule``, plus the double-buffering order of prefetches.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge

from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.topk import expert_schedule, route

from stream_bfm import InOrderChecker, StreamDriver, StreamMonitor, pack, unpack


def _params():
    p = json.loads(os.environ["HWGEN_TB_PARAMS"])
    for key in ("score_fmt", "weight_fmt"):  # the top-k unit's; the scheduler has none
        if key in p:
            p[key] = FixedFormat.parse(p[key])
    return p


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0


async def _wait_for(dut, done, limit: int):
    for _ in range(limit):
        await RisingEdge(dut.clk)
        if done():
            break
    await ClockCycles(dut.clk, 20)  # nothing extra may follow


# ---------------------------------------------------------------- top-k ---------------


class TopKModel:
    def __init__(self, p):
        self.p = p

    def tokens(self, scores):
        p = self.p
        experts, weights = route(scores, p["k"], p["score_fmt"], p["weight_fmt"], p["normalization"])
        return [(tuple(int(x) for x in e), tuple(int(x) for x in w)) for e, w in zip(experts, weights)]


def _score_rows(p, rng: np.random.Generator):
    f, n_e = p["score_fmt"], p["num_experts"]
    lo, hi = f.qmin, f.qmax
    rows = [
        np.zeros(n_e, dtype=np.int64),  # all tied at zero: experts 0..k-1
        np.full(n_e, lo),  # all most negative
        np.full(n_e, hi),  # all saturated high
        np.array([lo] * (n_e - 1) + [hi]),  # the last expert wins
        np.array([hi, lo] * (n_e // 2) + [hi] * (n_e % 2)),  # ties among the extremes
        np.arange(n_e)[::-1].copy(),  # descending: insertion at the end each time
        np.arange(n_e).copy(),  # ascending: insertion at the front each time
    ]
    while len(rows) < p["tokens"]:
        kind = rng.random()
        if kind < 0.4:
            rows.append(np.clip(np.floor(rng.normal(0, 2, n_e) * 2.0**f.frac_bits), lo, hi).astype(np.int64))
        elif kind < 0.7:  # few distinct values: many ties
            rows.append(rng.integers(-2, 3, n_e) << max(0, f.frac_bits - 2))
        elif kind < 0.85:  # close scores: the exp2 table's fine steps
            rows.append(rng.integers(-40, 40, n_e))
        else:  # any code
            rows.append(rng.integers(lo, hi, n_e, endpoint=True))
    return np.array(rows, dtype=np.int64)


@cocotb.test()
async def topk_matches_reference(dut):
    p = _params()
    n_e, k, sw, ww = p["num_experts"], p["k"], p["score_fmt"].width, p["weight_fmt"].width
    rng = np.random.default_rng(p["seed"])
    prng = random.Random(p["seed"])
    await _reset(dut)
    drv = StreamDriver(dut, "scores", dut.clk, p["p_valid"], prng)
    checker = InOrderChecker(dut._log, "o")
    eb = _bits(n_e)

    def on_beat(word):
        fields = unpack(word, [(eb, False)] * k + [(ww, True)] * k)
        checker.got((tuple(fields[:k]), tuple(fields[k:])))

    mon = StreamMonitor(dut, "o", dut.clk, on_beat, p["p_ready"], prng)
    scores = _score_rows(p, rng)
    for item in TopKModel(p).tokens(scores):
        checker.expect(item)
    for row in scores:
        for s in row:
            drv.append(pack([(s, sw)]))
    await _wait_for(dut, lambda: mon.received >= len(scores), 20 * n_e * len(scores) + 1000)
    dut._log.info("top-k: %d tokens checked, %d errors", checker.checked, checker.errors)
    assert mon.received == len(scores) == checker.checked
    assert checker.errors == 0


# ---------------------------------------------------------------- schedule ------------


def _images(p, rng: np.random.Generator):
    n_e, k, n_max = p["num_experts"], p["k"], p["max_tokens"]
    yield np.array([list(range(k))])  # one token
    yield np.tile(np.arange(k), (n_max, 1))  # every token to the same experts: full queues
    yield np.array([[n_e - 1 - j for j in range(k)] for _ in range(3)])  # only the last experts
    total = 0
    while total < p["tokens"]:
        n = int(rng.integers(1, n_max + 1))
        if rng.random() < 0.3:  # a few popular experts
            pool = rng.choice(n_e, size=min(n_e, k + 1), replace=False)
            img = np.array([rng.choice(pool, size=k, replace=False) for _ in range(n)])
        else:
            img = np.array([rng.choice(n_e, size=k, replace=False) for _ in range(n)])
        yield img
        total += n


@cocotb.test()
async def schedule_matches_reference(dut):
    p = _params()
    n_e, n_max = p["num_experts"], p["max_tokens"]
    eb, tb = _bits(n_e), _bits(n_max)
    rng = np.random.default_rng(p["seed"] + 1)
    prng = random.Random(p["seed"] + 1)
    await _reset(dut)
    drv = StreamDriver(dut, "route", dut.clk, p["p_valid"], prng)
    sched_checker = InOrderChecker(dut._log, "schedule")
    pf_checker = InOrderChecker(dut._log, "prefetch")
    sched_log: list[tuple[int, int, int, float]] = []  # expert, token, last, time
    pf_log: list[tuple[int, float]] = []

    def on_sched(word):
        e, t, last = unpack(word, [(eb, False), (tb, False), (1, False)])
        sched_log.append((e, t, last, get_sim_time("ns")))
        sched_checker.got((e, t, last))

    def on_pf(word):
        (e,) = unpack(word, [(eb, False)])
        pf_log.append((e, get_sim_time("ns")))
        pf_checker.got(e)

    mon_s = StreamMonitor(dut, "schedule", dut.clk, on_sched, p["p_ready"], prng)
    mon_p = StreamMonitor(dut, "prefetch", dut.clk, on_pf, p["p_ready"], prng)

    n_beats = n_pf = n_tokens = 0
    order_errors = 0
    schedules = []
    for img in _images(p, rng):
        sched = expert_schedule(img)
        schedules.append(sched)
        for e, toks in sched:
            pf_checker.expect(e)
            for i, t in enumerate(toks):
                sched_checker.expect((e, t, int(i == len(toks) - 1)))
        n_beats += sum(len(t) for _, t in sched)
        n_pf += len(sched)
        n_tokens += len(img)
        for i, row in enumerate(img):
            drv.append(pack([(e, eb) for e in row] + [(i == len(img) - 1, 1)]))
    await _wait_for(dut, lambda: mon_s.received >= n_beats and mon_p.received >= n_pf, 30 * n_beats + 1000)
    assert mon_s.received == n_beats == sched_checker.checked, f"{mon_s.received} of {n_beats} schedule beats"
    assert mon_p.received == n_pf == pf_checker.checked, f"{mon_p.received} of {n_pf} prefetches"

    # double buffering: prefetch of scheduled expert n+1 before expert n's first token,
    # and after expert n-1's last token
    pos = 0
    for sched in schedules:
        firsts, lasts = [], []
        for _, toks in sched:
            firsts.append(sched_log[pos][3])
            lasts.append(sched_log[pos + len(toks) - 1][3])
            pos += len(toks)
        pf_times = [t for _, t in pf_log[: len(sched)]]
        del pf_log[: len(sched)]
        for n in range(len(sched)):
            if n + 1 < len(sched) and not pf_times[n + 1] < firsts[n]:
                order_errors += 1
            if n >= 1 and n + 1 < len(sched) and not pf_times[n + 1] > lasts[n - 1]:
                order_errors += 1
    dut._log.info("schedule: %d tokens, %d schedule beats and %d prefetches checked, %d + %d + %d errors",
                  n_tokens, sched_checker.checked, pf_checker.checked, sched_checker.errors, pf_checker.errors, order_errors)
    assert order_errors == 0
    assert sched_checker.errors == 0 and pf_checker.errors == 0
