"""cocotb testbench of the MoE expert engines (MOE_GATHER, MOE_COMBINE), each on its own.

A Python model of the on-chip buffer serves the engine's read requests (``rd`` ->
``rd_data``, in order) and takes its writes (``wr``), with random stalls on all three
streams. Routing comes from :func:`hwgen.numerics.topk.route` and
:func:`~hwgen.numerics.topk.expert_schedule` (the words MOE_ROUTE writes); expected
results from :mod:`hwgen.numerics.moe` and a direct reading of the ISA.

Parameters (JSON in HWGEN_TB_PARAMS): ``engine`` ("gather" | "combine"), ``config``
(AcceleratorConfig as TOML values), ``seed``, ``tokens``, ``experts``, ``chunk`` (T),
``rounds``.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from stream_bfm import StreamDriver, StreamMonitor, pack, unpack

from fpga.config import AcceleratorConfig
from fpga.isa import FIELDS
from hwgen.fixedpoint import to_fixed
from hwgen.numerics.moe import combine_codes
from hwgen.numerics.topk import expert_schedule, route


def _params():
    p = json.loads(os.environ["HWGEN_TB_PARAMS"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acc.toml"
        path.write_text("[accelerator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in p["config"].items()))
        return AcceleratorConfig.from_toml(path), p


class Buffer:
    """Word-addressed buffer behind rd/rd_data/wr (random stalls)."""

    def __init__(self, dut, rng: random.Random, words: int):
        self.words = [0] * words
        self.rd_data = StreamDriver(dut, "rd_data", dut.clk, p_valid=0.7, rng=random.Random(rng.random()))
        StreamMonitor(dut, "rd", dut.clk, self._read, p_ready=0.6, rng=random.Random(rng.random()))
        self.abits = len(dut.wr__payload) - len(dut.rd_data__payload)
        StreamMonitor(dut, "wr", dut.clk, self._write, p_ready=0.7, rng=random.Random(rng.random()))
        self.errors = []

    def _read(self, addr: int) -> None:
        if addr >= len(self.words):
            self.errors.append(f"read of word {addr} outside the buffer")
            addr = 0
        self.rd_data.append(self.words[addr])

    def _write(self, payload: int) -> None:
        addr = payload & ((1 << self.abits) - 1)
        if addr >= len(self.words):
            self.errors.append(f"write of word {addr} outside the buffer")
            return
        self.words[addr] = payload >> self.abits


def _word(codes, bits: int) -> int:
    return pack((int(c), bits) for c in codes)


def _codes(word: int, bits: int, lanes: int) -> list[int]:
    return unpack(word, [(bits, True)] * lanes)


async def _instr(dut, fields: dict, limit: int = 200_000) -> int:
    """Pulse ``start`` with the instruction fields; return the cycles until ``done``."""
    dut.args.value = pack((fields.get(name, 0), width) for name, _, width in FIELDS[1:])
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    for n in range(1, limit):
        await ReadOnly()
        if int(dut.done.value):
            await RisingEdge(dut.clk)
            return n
        await RisingEdge(dut.clk)
    raise AssertionError(f"no done within {limit} cycles")


async def _reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


@cocotb.test()
async def expert_engine(dut):
    cfg, p = _params()
    rng = random.Random(p["seed"])
    nrng = np.random.default_rng(p["seed"])
    act, lanes, k = cfg.act_fmt, cfg.lanes, cfg.moe_k
    bits = act.width
    await _reset(dut)
    buf = Buffer(dut, rng, 4096)
    checked = 0
    for rnd in range(p["rounds"]):
        m, n_e, t_max = p["tokens"], p["experts"], p["chunk"]
        s = rng.choice([1, 2, 3])  # words a token row
        if p["engine"] == "gather":
            scores = to_fixed(nrng.normal(0, 1, (m, n_e)), act)
            scores[: m // 4] = nrng.integers(-1, 2, (m // 4, n_e))  # ties: lower index first
            if rnd % 3 == 0:
                scores[:, 0] = act.qmin  # expert 0 never chosen: GATHERs of no rows
            experts, weights = route(scores, k, act, act, cfg.moe_normalization)
            table, sched, x, g, lst = 100, 300, 1000, 2500, 3500
            for t in range(m):
                buf.words[table + t] = _word(list(experts[t]) + list(weights[t]), bits)
            entries = [(e, t, int(i == len(ts) - 1)) for e, ts in expert_schedule(experts) for i, t in enumerate(ts)]
            buf.words[sched] = _word([len(entries), len({e for e, _, _ in entries})], bits)
            for i, ent in enumerate(entries):
                buf.words[sched + 1 + i] = _word(ent, bits)
            rows = [[rng.getrandbits(cfg.mem_port_bits) for _ in range(s)] for _ in range(m)]
            for t in range(m):
                buf.words[x + t * s: x + (t + 1) * s] = rows[t]
            cursor, end = sched + 1, sched + 1 + len(entries)
            dut.moe_end.value = end
            pos = 0
            for e in range(n_e):
                mine = [(t, int(weights[t][list(experts[t]).index(e)])) for ee, t, _ in entries if ee == e]
                for c0 in range(0, max(m, 1), t_max):
                    dut.moe_cursor.value = cursor
                    await _instr(dut, {"src0": x, "dst": g, "src1": lst, "aux": e, "length": t_max,
                                       "ext_addr": s | (table << 16)})
                    want = mine[c0:c0 + t_max]
                    got_rows, got_cursor = int(dut.rows_gathered.value), int(dut.next_cursor.value)
                    assert got_rows == len(want), f"expert {e} chunk {c0}: {got_rows} rows, want {len(want)}"
                    pos += len(want)
                    assert got_cursor == sched + 1 + pos, f"expert {e}: cursor {got_cursor}, want {sched + 1 + pos}"
                    for i, (t, w) in enumerate(want):
                        assert buf.words[g + i * s: g + (i + 1) * s] == rows[t], f"expert {e}: row {i} (token {t})"
                        got = _codes(buf.words[lst + i], bits, lanes)
                        assert got[:2] == [t, w] and not any(got[2:]), f"expert {e}: list {i} = {got[:2]}, want {[t, w]}"
                        checked += 1
                    cursor = got_cursor
            assert cursor == end
        else:
            h_base, l_base, y_base = 100, 1500, 2000
            n_rows = rng.randint(0, min(m, 40))
            toks = rng.sample(range(m), n_rows)
            w = to_fixed(nrng.random(n_rows), act)
            if n_rows:
                w[0] = act.qmax if rnd % 2 else w[0]  # a gate weight of ~512: saturates Y
            h = nrng.integers(act.qmin // 4, act.qmax // 4, (n_rows, s * lanes))
            y = nrng.integers(act.qmin // 2, act.qmax // 2, (m, s * lanes))
            for i in range(n_rows):
                buf.words[l_base + i] = _word([toks[i], w[i]], bits)
                for j in range(s):
                    buf.words[h_base + i * s + j] = _word(h[i, j * lanes:(j + 1) * lanes], bits)
            for t in range(m):
                for j in range(s):
                    buf.words[y_base + t * s + j] = _word(y[t, j * lanes:(j + 1) * lanes], bits)
            want = y.copy()
            for i in range(n_rows):
                want[toks[i]] = combine_codes(want[toks[i]], h[i], w[i], act)
            dut.moe_rows.value = n_rows
            await _instr(dut, {"src0": h_base, "src1": l_base, "dst": y_base, "aux": s})
            for t in range(m):
                got = sum((_codes(buf.words[y_base + t * s + j], bits, lanes) for j in range(s)), [])
                assert got == list(want[t]), f"round {rnd}: Y row {t} differs"
                checked += t in toks
    assert not buf.errors, buf.errors[:5]
    dut._log.info("%s: %d rows bit-exact", p["engine"], checked)
    assert checked >= p.get("min_rows", 1)
