"""cocotb testbench of LINEAR's engine (``fpga.hdl.engine_linear.LinearEngine``).

The DUT is :class:`simulators.engine_harness.EngineHarness` around the engine: the top's
buffer reader and DMA, a Python buffer behind the reader's synchronous read port and the
``wr`` stream, and a Python external memory behind the DMA's read port (a burst accepted
at edge ``e`` offers its beats from edge ``e + latency`` on, one an edge, as
``simulators/hdl/hwgen_ext_mem.v``). Parameters: JSON in ``HWGEN_TB_PARAMS``
(``config``: AcceleratorConfig as TOML values, ``seed``, ``latency``, ``exact``: a list of
``[M, N, K, gelu]``, ``random``: how many random LINEARs, ``stalls``: probabilities that
the buffer read requests, read words, writes, memory requests and memory beats move in a
cycle).

* First every ``exact`` LINEAR runs without stalls: Y in the buffer equals
  :func:`hwgen.numerics.linear.linear_codes` bit for bit, nothing else is written, and
  the cycles from ``start`` to ``done`` equal :func:`fpga.hdl.engine_linear.linear_cycles`.
* Then ``random`` LINEARs (random M including 0, N, K across weight-bank tiles and both
  activation-store modes, GELU or not; random, moderate and saturating codes) with every
  stream stalling at random: Y bit-exact, nothing else written.
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from top_program import pack_words
from engine_tb import engine_args, tb_params
from tb_moe_expert import Buffer

from fpga.hdl.dma import ADDR_BITS
from fpga.hdl.engine_linear import linear_cycles, weight_words
from hwgen.numerics.linear import linear_codes


class Env(Buffer):
    """The buffer (:class:`tb_moe_expert.Buffer`) and external memory in one coroutine, with
    random stalls on every stream: ``set_stalls`` takes the probabilities that the buffer
    read requests, read words, writes, memory requests and memory beats move in a cycle."""

    def __init__(self, dut, rng: random.Random, latency: int, data_bits: int):
        self.latency = latency
        self.bytes_per_word = data_bits // 8
        self.ext: dict[int, int] = {}
        self.beats: deque[tuple[int, int]] = deque()   # (first edge it may be taken, word)
        self.p_mem = (1.0, 1.0)
        self.edge = 0          # index of the coming clock edge
        self.done_edges: list[int] = []
        self.errors = 0
        self._beat = False
        super().__init__(dut, rng, 1.0, 1.0, 1.0)

    def set_stalls(self, p_rd: float, p_data: float, p_wr: float, p_req: float = 1.0, p_beat: float = 1.0) -> None:
        super().set_stalls(p_rd, p_data, p_wr)
        self.p_mem = (p_req, p_beat)

    def _drive(self) -> None:
        dut, rng = self.dut, self.rng
        self.edge += 1
        p_req, p_beat = self.p_mem
        dut.rd_req__ready.value = int(rng.random() < p_req)
        self._beat = beat = bool(self.beats) and self.beats[0][0] <= self.edge and rng.random() < p_beat
        dut.rd_data__valid.value = int(beat)
        if beat:
            dut.rd_data__payload.value = self.beats[0][1]

    def _sample(self) -> None:
        dut = self.dut
        if int(dut.rd_req__valid.value) and int(dut.rd_req__ready.value):
            payload = int(dut.rd_req__payload.value)
            addr, n = payload & ((1 << ADDR_BITS) - 1), payload >> ADDR_BITS
            if addr % self.bytes_per_word or n == 0:
                self.errors += 1
                dut._log.error("bad memory request: byte address %#x, %d beats", addr, n)
            for i in range(n):
                self.beats.append((self.edge + self.latency, self.ext.get(addr // self.bytes_per_word + i, 0)))
        if self._beat and int(dut.rd_data__ready.value):
            self.beats.popleft()
        if int(dut.done.value):
            self.done_edges.append(self.edge)


def _codes(rng, f, shape, kind: int) -> np.ndarray:
    if kind == 0:
        return rng.integers(f.qmin, f.qmax + 1, shape)
    if kind == 1:   # moderate values: results mostly inside the output range
        return rng.integers(max(f.qmin, -(1 << (f.width - 6))), min(f.qmax, 1 << (f.width - 6)) + 1, shape)
    return np.full(shape, f.qmax if kind == 2 else f.qmin)


async def _run_linear(dut, env: Env, config, rng, m: int, n: int, k: int, gelu: bool, kind: int) -> int:
    """One LINEAR; checks the buffer afterwards; returns its cycles (start to done)."""
    c, act, wf = config, config.act_fmt, config.weight_fmt
    lanes = c.lanes
    sk, sn = -(-k // lanes), n // lanes
    x = _codes(rng, act, (max(m, 1), k), kind)[:m]
    w = _codes(rng, wf, (k, n), kind)
    b = _codes(rng, act, (n,), 1 if kind == 0 else kind)
    xb = int(rng.integers(0, 64))
    yb = xb + m * sk + int(rng.integers(0, 8))
    env.words = {xb + i: word for i, word in enumerate(pack_words(x, act.width, lanes))} if m else {}
    env.writes = []
    w_words, bias_words = weight_words(c.mac_cols, wf.width, act.width, c.mem_port_bits)
    img = []
    for j in range(0, n, c.mac_cols):
        img += pack_words(b[None, j:j + c.mac_cols], act.width, lanes)
        img += pack_words(w[:, j:j + c.mac_cols], wf.width, c.mem_port_bits // wf.width)
    assert len(img) == n // c.mac_cols * (bias_words + k * w_words)
    wb = int(rng.integers(0, 1000))
    env.ext = {wb + i: word for i, word in enumerate(img)}
    before = dict(env.words)

    await RisingEdge(dut.clk)
    dut.args.value = engine_args(flags=int(gelu), src0=xb, dst=yb, length=m, aux=k, src1=n,
                           ext_addr=wb * env.bytes_per_word)
    dut.start.value = 1
    await ReadOnly()
    start_edge = env.edge
    await RisingEdge(dut.clk)
    dut.start.value = 0
    n_done = len(env.done_edges)
    limit = 40 * (m + c.mac_rows) * (n // c.mac_cols + 1) * (k + 40) + 1000
    for _ in range(limit):
        await RisingEdge(dut.clk)
        if len(env.done_edges) > n_done:
            break
    assert len(env.done_edges) == n_done + 1, f"LINEAR M={m} N={n} K={k} did not finish in {limit} cycles"
    cycles = env.done_edges[-1] - start_edge

    want = {yb + i: word for i, word in enumerate(pack_words(linear_codes(x, w, b, act, wf, act, act, gelu=gelu),
                                                             act.width, lanes))} if m else {}
    assert sorted(env.writes) == sorted(want), (f"M={m} N={n} K={k}: wrote {len(env.writes)} words "
                                                f"(distinct {len(set(env.writes))}), want {len(want)} at Y")
    bad = [a for a in want if env.words.get(a) != want[a]]
    assert not bad, f"M={m} N={n} K={k} gelu={gelu}: {len(bad)} of {len(want)} Y words differ, first at {bad[0]}"
    assert all(env.words.get(a) == v for a, v in before.items() if a not in want), "X changed"
    assert env.errors == 0
    return cycles


@cocotb.test()
async def linear_engine(dut):
    config, p = tb_params()
    seed = int(p.get("seed", 0))
    rng = np.random.default_rng(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.args.value = 0
    env = Env(dut, random.Random(seed), int(p["latency"]), config.mem_port_bits)
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    for i, (m, n, k, gelu) in enumerate(p["exact"]):
        cycles = await _run_linear(dut, env, config, rng, m, n, k, bool(gelu), i % 3)
        want = linear_cycles(m, n, k, config, latency=int(p["latency"]), gelu=bool(gelu))
        dut._log.info("M=%d N=%d K=%d: %d cycles (linear_cycles: %d)", m, n, k, cycles, want)
        assert p.get("measure") or cycles == want, f"M={m} N={n} K={k}: {cycles} cycles, linear_cycles says {want}"

    env.set_stalls(*p["stalls"])
    depth, max_k = config.weight_depth, config.linear_max_k
    for i in range(int(p["random"])):
        m = 0 if i == 1 else int(rng.integers(1, 3 * config.mac_rows + 1))
        n = config.mac_cols * int(rng.integers(1, 4))
        k = int(rng.choice([rng.integers(1, depth + 1), rng.integers(depth + 1, max_k // 2 + 1),
                            rng.integers(max_k // 2 + 1, max_k + 1)]))
        await _run_linear(dut, env, config, rng, m, n, k, bool(i % 2), i % 4)
        dut._log.info("random LINEAR %d: M=%d N=%d K=%d bit-exact", i, m, n, k)
