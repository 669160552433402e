"""cocotb testbenches of MOE_GATHER and MOE_COMBINE (``fpga.hdl.engine_moe_expert``).

The DUT is :class:`simulators.engine_harness.EngineHarness` around one engine: the top's
buffer reader, a Python buffer behind its synchronous read port and the ``wr`` stream,
random stalls on the read requests, the read data and the writes. Parameters: JSON in
``HWGEN_TB_PARAMS`` (``config``: AcceleratorConfig as TOML values, ``seed``, ``p_rd``,
``p_data``, ``p_wr``: probabilities that the stream moves in a cycle).

* ``gather_matches_spec``: route tables and schedules as MOE_ROUTE writes them
  (:func:`hwgen.numerics.topk.route`, :func:`~hwgen.numerics.topk.expert_schedule`), then
  for every expert and chunk a MOE_GATHER; after each one the whole buffer and the
  ``moe_cursor``/``moe_rows`` outputs equal a Python model of the ISA's pseudo-code, and per
  image the gathered tokens and weights equal the schedule's and the route's. A designed
  image has experts with no tokens, exactly T, more than T (two GATHERs continuing from the
  cursor), tied scores, and the cursor reaching ``moe_end``.
* ``combine_matches_reference``: MOE_COMBINE of random and saturating rows; the whole buffer
  after each instruction equals :func:`hwgen.numerics.moe.combine_codes` applied row by row.

Each test first runs without stalls and checks the engine's documented cycle count, then
again with the stalls.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from top_program import designed_routing
from engine_tb import engine_args, run_instr, tb_params

from fpga.cost.cycles import combine_cycles, gather_cycles
from fpga import isa
from hwgen.numerics.moe import combine_codes
from hwgen.numerics.topk import expert_schedule, route


class Words:
    """Buffer words <-> lanes of ``fw``-bit codes."""

    def __init__(self, lanes: int, fw: int):
        self.lanes, self.fw = lanes, fw

    def pack(self, values) -> int:
        word = 0
        for i, v in enumerate(values):
            word |= (int(v) & ((1 << self.fw) - 1)) << (i * self.fw)
        return word

    def unsigned(self, word: int) -> list[int]:
        return [(word >> (i * self.fw)) & ((1 << self.fw) - 1) for i in range(self.lanes)]

    def signed(self, word: int) -> list[int]:
        return [v - (1 << self.fw) if v >> (self.fw - 1) else v for v in self.unsigned(word)]

    def field(self, word: int, i: int) -> int:
        return isa.index_field(self.unsigned(word), i, self.fw)

    def list_word(self, token: int, weight: int, rest=()) -> int:
        """A list word (:func:`fpga.isa.list_word`) with ``rest`` in the lanes after the weight."""
        lanes = isa.list_word(token, weight, self.fw, self.lanes)
        after = isa.index_lanes(self.fw) + 1
        lanes[after:after + len(rest)] = rest
        return self.pack(lanes)

    def list_entry(self, word: int) -> tuple[int, int]:
        """(token, signed weight) of a list word."""
        return isa.list_entry(self.signed(word), self.fw)


class Buffer:
    """The buffer behind the harness: a synchronous read port and the ``wr`` stream,
    with random stalls; one coroutine (reads the old word when a write hits the same
    address in the same cycle, as the DMA's block RAM). ``writes``: the addresses written,
    in order. A subclass adds models of other ports in the same coroutine: ``_drive`` sets
    their inputs each cycle (after the buffer's stalls are drawn), ``_sample`` reads their
    outputs (in the cycle's read-only phase)."""

    def __init__(self, dut, rng: random.Random, p_rd: float, p_data: float, p_wr: float):
        self.dut, self.rng = dut, rng
        self.p = (p_rd, p_data, p_wr)
        self.words: dict[int, int] = {}
        self.writes: list[int] = []
        cocotb.start_soon(self._run())

    def set_stalls(self, p_rd: float, p_data: float, p_wr: float) -> None:
        self.p = (p_rd, p_data, p_wr)

    def _drive(self) -> None:
        pass

    def _sample(self) -> None:
        pass

    async def _run(self) -> None:
        dut, rng = self.dut, self.rng
        read_word = 0
        addr_bits = len(dut.mem_addr)
        while True:
            await RisingEdge(dut.clk)
            p_rd, p_data, p_wr = self.p
            dut.mem_data.value = read_word
            dut.rd_stall.value = int(rng.random() >= p_rd)
            dut.data_stall.value = int(rng.random() >= p_data)
            dut.wr__ready.value = int(rng.random() < p_wr)
            self._drive()
            await ReadOnly()
            read_word = self.words.get(int(dut.mem_addr.value), 0)
            if int(dut.wr__valid.value) and int(dut.wr__ready.value):
                payload = int(dut.wr__payload.value)
                addr = payload & ((1 << addr_bits) - 1)
                self.words[addr] = payload >> addr_bits
                self.writes.append(addr)
            self._sample()


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.args.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0


_OUTPUTS = ("reg_we", "cursor_out", "rows_out")


async def _run_instr(dut, args: int, inputs: dict) -> tuple[int, dict]:
    """:func:`engine_tb.run_instr` with the MoE engines' register outputs."""
    return await run_instr(dut, args, inputs, _OUTPUTS, limit=100_000)


def _diff(got: dict, want: dict, what: str) -> list[str]:
    bad = sorted(a for a in set(got) | set(want) if got.get(a) != want.get(a))
    return [f"{what}: word {a}: got {got.get(a, 'nothing'):#x}, want {want.get(a, 'nothing'):#x}"
            if a in got and a in want else f"{what}: word {a}: got {got.get(a)}, want {want.get(a)}" for a in bad]


# ---------------------------------------------------------------- MOE_GATHER ----------

X_BASE, R_BASE, S_BASE, G_BASE, L_BASE = 0, 100, 200, 300, 400


def gather_model(mem: dict, cursor: int, end: int, ins: dict, k: int, w: Words) -> tuple[int, int]:
    """The ISA's MOE_GATHER pseudo-code on ``mem``; returns (moe_rows, moe_cursor)."""
    s, table = ins["ext_addr"] & 0xFFFF, (ins["ext_addr"] >> 16) & 0xFFFF
    count, cur = 0, cursor
    while count < ins["length"] and cur < end:
        word = mem.get(cur, 0)
        if w.field(word, 0) != ins["aux"]:
            break
        token = w.field(word, 1)
        rt = w.unsigned(mem.get(table + token, 0))
        weight = next((rt[k + j] for j in range(k) if rt[j] == ins["aux"]), 0)
        for i in range(s):
            mem[ins["dst"] + count * s + i] = mem.get(ins["src0"] + token * s + i, 0)
        mem[ins["src1"] + count] = w.list_word(token, weight)
        count += 1
        cur += 1
    return count, cur


def _gather_images(rng: np.random.Generator, k: int, n_e: int, max_tok: int, act):
    """(scores, T, S, entries cut from the end) of each image: the designed one, then random.
    Scores are integers times 2^(frac bits - 2) (quarters; integers at int8)."""
    shift = max(0, act.frac_bits - 2)
    scores, t = designed_routing(k, n_e)
    yield scores >> 20 << shift, t, 2, 0
    yield scores >> 20 << shift, t, 1, 0
    for _ in range(6):
        n = int(rng.integers(1, max_tok + 1))
        yield (rng.integers(-3, 4, (n, n_e)) << shift, int(rng.integers(0, 6)), int(rng.integers(1, 4)),
               int(rng.integers(0, 3)) if rng.random() < 0.3 else 0)


@cocotb.test()
async def gather_matches_spec(dut):
    config, p = tb_params()
    k, n_e, lanes, act = config.moe_k, config.moe_experts, config.lanes, config.act_fmt
    w = Words(lanes, act.width)
    rng = np.random.default_rng(p["seed"])
    bits = random.Random(p["seed"] + 1)
    buf = Buffer(dut, random.Random(p["seed"]), 1.0, 1.0, 1.0)
    await _start(dut)
    errors: list[str] = []
    n_instr = n_rows = 0
    for stalls in (False, True):
        if stalls:
            buf.set_stalls(p["p_rd"], p["p_data"], p["p_wr"])
        for img, (scores, t_max, s, cut) in enumerate(_gather_images(rng, k, n_e, 12, act)):
            n_tok = len(scores)
            experts, weights = route(scores, k, act, act, config.moe_normalization)
            sched = expert_schedule(experts)
            if img == 0:  # the designed image covers what it must
                counts = {e: len(toks) for e, toks in sched}
                assert 0 not in counts and t_max in counts.values() and max(counts.values()) > t_max, counts
                assert any(len(set(r)) < n_e for r in scores), "no tied scores"
                assert k == 1 or any(len(set(r)) == k for r in weights), "every token's gate weights are equal"
            mem = {X_BASE + i: bits.getrandbits(config.mem_port_bits) for i in range(n_tok * s)}
            for tok in range(n_tok):
                mem[R_BASE + tok] = w.pack(list(experts[tok]) + list(weights[tok]))
            sched_words = isa.schedule_words(sched, act.width, lanes)
            for i, word in enumerate(sched_words):
                mem[S_BASE + i] = w.pack(word)
            for i in range(max(t_max, 1) * s + max(t_max, 1)):  # garbage where G and L go
                mem[G_BASE + i] = bits.getrandbits(config.mem_port_bits)
                mem[L_BASE + i] = bits.getrandbits(config.mem_port_bits)
            buf.words = dict(mem)
            cursor, end = S_BASE + 1, S_BASE + len(sched_words) - cut
            got_tokens: dict[int, list[tuple[int, int]]] = {}
            for e in range(n_e):
                for _ in range(-(-n_tok // t_max) + 1 if t_max else 2):
                    ins = dict(src0=X_BASE, dst=G_BASE, src1=L_BASE, aux=e, length=t_max,
                               ext_addr=s | (R_BASE << 16))
                    want_rows, want_cursor = gather_model(mem, cursor, end, ins, k, w)
                    cycles, outs = await _run_instr(dut, engine_args(**ins), {"cursor_in": cursor, "end_in": end})
                    n_instr += 1
                    n_rows += outs["rows_out"]
                    if (outs["reg_we"], outs["rows_out"], outs["cursor_out"]) != (1, want_rows, want_cursor):
                        errors.append(f"image {img} expert {e}: reg_we/rows/cursor {outs}, want {want_rows}, "
                                      f"{want_cursor}")
                    errors += _diff(buf.words, mem, f"image {img} expert {e}")
                    if not stalls:  # documented: S + 9 a row, 4 (entry read) or 2 at the end
                        ended_by_entry = want_rows < t_max and want_cursor < end
                        want_cycles = gather_cycles(want_rows, s, ended_by_entry)  # the cycle model's
                        if cycles != want_cycles:
                            errors.append(f"image {img} expert {e}: {cycles} cycles, documented {want_cycles}")
                    for i in range(outs["rows_out"]):
                        got_tokens.setdefault(e, []).append(w.list_entry(buf.words.get(L_BASE + i, 0)))
                    cursor = outs["cursor_out"]
                    if errors:
                        break
            # independent of the model: the schedule's tokens and the route's weights
            if not cut and t_max and not errors:
                want_tokens = {e: [(tok, int(weights[tok][list(experts[tok]).index(e)])) for tok in toks]
                               for e, toks in sched}
                if got_tokens != want_tokens:
                    errors.append(f"image {img}: gathered {got_tokens}, schedule {want_tokens}")
            if errors:
                break
    for e in errors[:10]:
        dut._log.error(e)
    dut._log.info("MOE_GATHER: %d instructions, %d rows gathered, %d errors", n_instr, n_rows, len(errors))
    assert not errors, errors[0]
    assert n_rows > 0


# ---------------------------------------------------------------- MOE_COMBINE ---------

Y_BASE, H_BASE, LIST_BASE = 0, 300, 600


def _combine_cases(rng: np.random.Generator, fmt, n_y: int):
    """(So, [(token, w)], H rows [n, So*lanes]) of each instruction; the first saturate."""
    f, lo, hi = fmt.frac_bits, fmt.qmin, fmt.qmax
    one = 1 << f
    yield 1, [(0, one), (1, -one), (2, hi), (3, lo), (4, lo)], "saturate"
    for _ in range(14):
        so = int(rng.integers(0, 4)) if rng.random() < 0.1 else int(rng.integers(1, 4))
        n = int(rng.choice([0, 1, 2, 5, 8]))
        toks = rng.permutation(n_y)[:n]
        ws = []
        for _ in toks:
            r = rng.random()
            ws.append(int(rng.integers(0, one + 1)) if r < 0.6 else int(rng.integers(-2 * one, 2 * one))
                      if r < 0.8 else int(rng.integers(lo, hi + 1)))
        yield so, list(zip(toks.tolist(), ws)), "random"


@cocotb.test()
async def combine_matches_reference(dut):
    config, p = tb_params()
    fmt, lanes = config.act_fmt, config.lanes
    w = Words(lanes, fmt.width)
    rng = np.random.default_rng(p["seed"])
    buf = Buffer(dut, random.Random(p["seed"]), 1.0, 1.0, 1.0)
    await _start(dut)
    n_y = 10
    errors: list[str] = []
    n_instr = n_words = 0
    for stalls in (False, True):
        if stalls:
            buf.set_stalls(p["p_rd"], p["p_data"], p["p_wr"])
        y_codes = np.clip(np.round(rng.normal(0, 4, (n_y, 3 * lanes)) * (1 << fmt.frac_bits)), fmt.qmin, fmt.qmax)
        y_codes = y_codes.astype(np.int64)
        mem: dict[int, int] = {}
        for case, (so, rows, kind) in enumerate(_combine_cases(rng, fmt, n_y)):
            if kind == "saturate":  # y near the ends, h at the ends: sums and products saturate
                y_codes[:5, :lanes] = [[fmt.qmax - 3] * lanes, [fmt.qmin + 2] * lanes, [0] * lanes,
                                       [5] * lanes, [-(1 << 30)] * lanes]
                h = np.array([[fmt.qmax] * lanes, [fmt.qmax] * lanes, [fmt.qmax] * lanes, [fmt.qmax] * lanes,
                              [fmt.qmin] * lanes])
                h[:, 1::2] = fmt.qmin  # the other sign in odd lanes
            else:
                h = np.clip(np.round(rng.normal(0, 8, (len(rows), so * lanes)) * (1 << fmt.frac_bits)),
                            fmt.qmin, fmt.qmax).astype(np.int64)
                if len(rows):
                    h.flat[rng.integers(0, h.size, max(1, h.size // 10))] = fmt.qmax  # some extremes
            for tok in range(n_y):  # Y rows at this So: what earlier cases left, else fresh codes
                for j in range(so):
                    if kind == "saturate" or Y_BASE + tok * so + j not in mem:
                        mem[Y_BASE + tok * so + j] = w.pack(y_codes[tok, j * lanes:(j + 1) * lanes])
            for i, (tok, wt) in enumerate(rows):
                rest = rng.integers(0, 1000, lanes - 1 - isa.index_lanes(fmt.width)).tolist()  # lanes past w: ignored
                mem[LIST_BASE + i] = w.list_word(tok, wt, rest)
                for j in range(so):
                    mem[H_BASE + i * so + j] = w.pack(h[i, j * lanes:(j + 1) * lanes])
            buf.words = dict(mem)
            want = dict(mem)
            for i, (tok, wt) in enumerate(rows):
                for j in range(so):
                    y = np.array(w.signed(want[Y_BASE + tok * so + j]))
                    hv = np.array(w.signed(want[H_BASE + i * so + j]))
                    want[Y_BASE + tok * so + j] = w.pack(combine_codes(y, hv, wt, fmt))
            ins = dict(src0=H_BASE, src1=LIST_BASE, dst=Y_BASE, aux=so)
            cycles, _ = await _run_instr(dut, engine_args(**ins), {"rows_in": len(rows)})
            n_instr += 1
            n_words += len(rows) * so
            errors += _diff(buf.words, want, f"case {case} ({kind}, So={so}, {len(rows)} rows)")
            documented = combine_cycles(len(rows), so)  # the cycle model's (fpga/cost/cycles.py)
            if not stalls and cycles != documented:
                errors.append(f"case {case}: {cycles} cycles, documented {documented}")
            if kind == "saturate":
                sat = [w.signed(buf.words[Y_BASE + t])[0] for t in range(5)]
                if sat[:2] != [fmt.qmax, fmt.qmin]:
                    errors.append(f"saturation case: {sat}")
            mem = dict(buf.words)
            if errors:
                break
        if errors:
            break
    for e in errors[:10]:
        dut._log.error(e)
    dut._log.info("MOE_COMBINE: %d instructions, %d words combined, %d errors", n_instr, n_words, len(errors))
    assert not errors, errors[0]
    assert n_words > 0
