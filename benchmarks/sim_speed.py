"""Simulated cycles per second of the accelerator top: Verilator (cocotb) vs Amaranth's simulator.

Both simulators get the same ``fpga.hdl.top.Accelerator`` (default ``AcceleratorConfig``,
256-bit port, the same ``buffer_words``: 256 unless ``--words`` needs more; only the GELU
engine, the program's one compute op, unless ``--all-ops``: the full top's Verilator build
alone takes minutes) and run the same program, ``LOAD n words / SYNC / GELU / STORE /
END`` (``tb_top``'s), ``--repeat`` times back to back (a ``start`` pulse after each
``done``), against the same zero-wait external memory. One Python model of that memory (:class:`ZeroWaitMemory`) and one
driving loop (:func:`run_program`) serve both: per clock edge the model drives the source
streams (``ins_data``, ``rd_data``), then samples every handshake, by the rule of
``simulators/tb/stream_bfm.py`` at ``p_valid = p_ready = 1``. Only the signal access
differs (cocotb handles after ``RisingEdge``/``ReadOnly``; ``ctx.set``/``ctx.get`` after
``ctx.tick()`` in an Amaranth testbench). So both must take the same number of cycles,
and every run's results must equal ``hwgen.numerics.gelu.gelu_codes`` bit for bit; the
script checks both and exits non-zero otherwise.

A third row runs the program on Verilator once more with the project's own stream BFMs
(``StreamDriver``/``StreamMonitor``, one coroutine per stream, ``tb_top``'s loop, no
stalls): the cost of the testbench style the RTL tests use. ``--no-bfm`` drops it.

"wall s" is the simulation loop only (first ``start`` to last ``done``), timed inside each
testbench; build time (Verilog conversion + Verilator compile + cocotb start-up, resp.
elaboration + ``Simulator`` construction) is printed apart.

Run: ``python benchmarks/sim_speed.py [--words N] [--repeat R] [--buffer-words B] [--all-ops] [--no-bfm]``.
This file is also the cocotb test module of the Verilator runs (``run_cocotb(...,
test_dir=benchmarks/)``); those tests write their measurements to the JSON file named by
``SIM_SPEED_JSON``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cocotb  # noqa: E402  (defining cocotb tests needs no simulator)

from fpga.hdl.dma import ADDR_BITS  # noqa: E402
from fpga.isa import Instr, Op, encode  # noqa: E402
from hwgen.fixedpoint import FixedFormat  # noqa: E402

__all__ = ["ZeroWaitMemory", "make_top", "run_program", "run_verilator", "run_amaranth", "check", "main"]

ACT = FixedFormat(32, 10)
DATA_BITS = 256
LANES = DATA_BITS // 32
BYTES_PER_WORD = DATA_BITS // 8
PROG_BASE = 0x40
IN_EXT = 0x1000
DEFAULT_WORDS = 128
DEFAULT_REPEAT = 50
DEFAULT_BUFFER_WORDS = 256


# --------------------------------------------------------------------------- the workload

def out_ext(words: int) -> int:
    """External byte address of the results, past the inputs (``tb_top``'s 0x8000 overlaps them above 896 words)."""
    return IN_EXT + ((words * BYTES_PER_WORD + 0xFFF) // 0x1000 + 1) * 0x1000


def program(words: int) -> list[Instr]:
    """LOAD n words to buffer 0, GELU into buffer n, STORE it, END."""
    return [
        Instr(Op.LOAD, dst=0, length=words, ext_addr=IN_EXT),
        Instr(Op.SYNC),
        Instr(Op.GELU, src0=0, dst=words, length=words),
        Instr(Op.STORE, src0=words, length=words, ext_addr=out_ext(words)),
        Instr(Op.END),
    ]


def activations(words: int, seed: int) -> np.ndarray:
    """fixed<32,10> codes ``(words, LANES)``: mostly inside GELU's table range; word 0 holds edge cases."""
    rng = np.random.default_rng(seed)
    x = rng.integers(ACT.qmin, ACT.qmax + 1, size=(words, LANES), dtype=np.int64)
    x[:, :] = np.where(rng.random((words, LANES)) < 0.7, rng.integers(-7 << 22, 7 << 22, size=(words, LANES)), x)
    x[0, :] = [0, ACT.qmin, ACT.qmax, -1, 1, 5 << 22, -(5 << 22), 11 << 21]
    return x


def _pack(row) -> int:
    return sum((int(v) & 0xFFFF_FFFF) << (32 * i) for i, v in enumerate(row))


def _unpack(word: int) -> list[int]:
    lanes = [(word >> (32 * i)) & 0xFFFF_FFFF for i in range(LANES)]
    return [v - (1 << 32) if v >> 31 else v for v in lanes]


def _cycle_limit(words: int) -> int:
    return 40 * words + 1000  # tb_top's bound for one run


class ZeroWaitMemory:
    """Instruction and external data memory behind the top's stream ports, without stalls.

    ``edge()`` runs right after a rising clock edge: it drives ``ins_data``/``rd_data``
    (a beat starts as soon as one is queued and is held until taken). ``sample()`` runs
    once the design has settled: it takes the beats where ``valid & ready`` (a request
    queues its data beats for the next edge) and returns ``done``. The four sinks'
    ``ready`` stay 1. ``sig`` maps Verilog port names to the simulator's handles;
    ``get_bit``, ``get_word`` and ``put`` read and write them.
    """

    PORTS = ("ins_req__valid", "ins_req__ready", "ins_req__payload", "ins_data__valid", "ins_data__ready",
             "ins_data__payload", "rd_req__valid", "rd_req__ready", "rd_req__payload", "rd_data__valid",
             "rd_data__ready", "rd_data__payload", "wr_req__valid", "wr_req__ready", "wr_req__payload",
             "wr_data__valid", "wr_data__ready", "wr_data__payload", "done")

    def __init__(self, sig: dict, get_bit, get_word, put, words: int, x: np.ndarray):
        self._attach(sig, get_bit, get_word, put,
                     {PROG_BASE // 16 + i: encode(ins) for i, ins in enumerate(program(words))},
                     {IN_EXT // BYTES_PER_WORD + k: _pack(row) for k, row in enumerate(x)})
        self.out_base, self.words = out_ext(words) // BYTES_PER_WORD, words

    @classmethod
    def from_image(cls, sig: dict, get_bit, get_word, put, imem: dict, ext: dict) -> ZeroWaitMemory:
        """The model over any image: ``imem`` {byte address // 16: instruction}, ``ext`` {word address: word}."""
        self = cls.__new__(cls)
        self._attach(sig, get_bit, get_word, put, dict(imem), dict(ext))
        return self

    def _attach(self, sig, get_bit, get_word, put, imem: dict, ext: dict) -> None:
        self.s, self.get_bit, self.get_word, self.put = sig, get_bit, get_word, put
        self.imem, self.ext = imem, ext
        self.ins_q: deque[int] = deque()
        self.rd_q: deque[int] = deque()
        self.pending: deque[int] = deque()   # word addresses of accepted write bursts, beat by beat
        self.ins_hold = self.rd_hold = False
        self.ins_valid = self.rd_valid = False  # last value written to the valid ports
        self.fetched = 0
        self.errors = 0

    def reset(self) -> None:
        for name in ("ins_req__ready", "rd_req__ready", "wr_req__ready", "wr_data__ready"):
            self.put(self.s[name], 1)
        for name in ("ins_data__valid", "rd_data__valid", "ins_data__payload", "rd_data__payload"):
            self.put(self.s[name], 0)

    def clear_output(self) -> None:
        for k in range(self.words):
            self.ext.pop(self.out_base + k, None)

    def output(self) -> list[int]:
        return [self.ext.get(self.out_base + k, 0) for k in range(self.words)]

    def _req(self, name: str, align: int) -> tuple[int, int]:
        p = self.get_word(self.s[name])
        addr, beats = p & ((1 << ADDR_BITS) - 1), (p >> ADDR_BITS) & 0xFF
        if addr % align:
            self.errors += 1
        return addr, beats

    def edge(self) -> None:
        s, put = self.s, self.put
        if not self.ins_hold and self.ins_q:
            put(s["ins_data__payload"], self.ins_q[0])
            self.ins_hold = True
        if self.ins_valid != self.ins_hold:
            self.ins_valid = self.ins_hold
            put(s["ins_data__valid"], int(self.ins_hold))
        if not self.rd_hold and self.rd_q:
            put(s["rd_data__payload"], self.rd_q[0])
            self.rd_hold = True
        if self.rd_valid != self.rd_hold:
            self.rd_valid = self.rd_hold
            put(s["rd_data__valid"], int(self.rd_hold))

    def sample(self) -> bool:
        s, get = self.s, self.get_bit
        if self.ins_hold and get(s["ins_data__ready"]):
            self.ins_q.popleft()
            self.ins_hold = False
        if self.rd_hold and get(s["rd_data__ready"]):
            self.rd_q.popleft()
            self.rd_hold = False
        if get(s["ins_req__valid"]):
            addr, beats = self._req("ins_req__payload", 16)
            for i in range(beats):
                self.ins_q.append(self.imem.get(addr // 16 + i, 0))
            self.fetched += beats
        if get(s["rd_req__valid"]):
            addr, beats = self._req("rd_req__payload", BYTES_PER_WORD)
            w = addr // BYTES_PER_WORD
            self.rd_q.extend(self.ext.get(w + i, 0) for i in range(beats))
        if get(s["wr_req__valid"]):
            addr, beats = self._req("wr_req__payload", BYTES_PER_WORD)
            w = addr // BYTES_PER_WORD
            self.pending.extend(range(w, w + beats))
        if get(s["wr_data__valid"]):
            if self.pending:
                self.ext[self.pending.popleft()] = self.get_word(s["wr_data__payload"])
            else:
                self.errors += 1
        return bool(get(s["done"]))


async def run_program(mem, tick, settle, set_start, repeat: int, words: int) -> dict:
    """Run the program ``repeat`` times; the same loop for every simulator.

    Enter right after a clock edge. ``tick()`` / ``settle()`` return what to await for the
    next rising edge / for the design to settle (``settle`` None: already settled). Counts
    a run's cycles like ``tb_top``: clock edges after the one that samples ``start`` until
    ``done`` is seen.
    """
    limit = _cycle_limit(words)
    run_cycles, first, differing, edges = [], None, 0, 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        mem.clear_output()
        set_start(1)
        await tick()                  # start is sampled here
        set_start(0)
        cycles = 0
        while True:
            mem.edge()
            if settle is not None:
                await settle()
            if mem.sample():
                break
            await tick()
            cycles += 1
            assert cycles < limit, "END not reached"
        await tick()                  # out of the read-only phase before the next start
        edges += cycles + 2
        run_cycles.append(cycles)
        out = mem.output()
        if first is None:
            first = out
        differing += out != first
    wall = time.perf_counter() - t0
    return {"cycles": edges, "run_cycles": sorted(set(run_cycles)), "wall_s": wall,
            "out": [format(w, "x") for w in first], "runs_differing": differing,
            "fetched": mem.fetched, "mem_errors": mem.errors}


# --------------------------------------------------------------------------- Verilator (cocotb)

def _env_workload() -> tuple[int, int, np.ndarray]:
    words = int(os.environ["SIM_SPEED_WORDS"])
    return words, int(os.environ["SIM_SPEED_REPEAT"]), activations(words, int(os.environ["SIM_SPEED_SEED"]))


def _write_json(key: str, value: dict) -> None:
    path = Path(os.environ["SIM_SPEED_JSON"])
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = value
    path.write_text(json.dumps(results))


async def _cocotb_reset(dut) -> None:
    sys.path.insert(0, str(ROOT / "simulators" / "tb"))
    from program_host import reset

    await reset(dut, PROG_BASE)


def _cocotb_put(handle, value) -> None:
    handle.value = value


@cocotb.test()
async def sim_speed_zero_wait(dut):
    """The program on the shared ZeroWaitMemory model (one coroutine)."""
    from cocotb.triggers import ReadOnly, RisingEdge

    words, repeat, x = _env_workload()
    mem = ZeroWaitMemory({n: getattr(dut, n) for n in ZeroWaitMemory.PORTS}, lambda h: int(h.value),
                         lambda h: h.value.to_unsigned(), _cocotb_put, words, x)
    mem.reset()
    await _cocotb_reset(dut)
    edge, settled = RisingEdge(dut.clk), ReadOnly()
    res = await run_program(mem, lambda: edge, lambda: settled, lambda v: _cocotb_put(dut.start, v), repeat, words)
    _write_json("verilator", {**res, "error": int(dut.error.value)})


class _BfmMemory:
    """The same memory on ``stream_bfm``'s StreamDriver/StreamMonitor coroutines, no stalls."""

    def __init__(self, dut, words: int, x: np.ndarray):
        import random

        sys.path.insert(0, str(ROOT / "simulators" / "tb"))
        from stream_bfm import StreamDriver, StreamMonitor

        self.dut = dut
        self.imem = {PROG_BASE // 16 + i: encode(ins) for i, ins in enumerate(program(words))}
        self.ext = {IN_EXT // BYTES_PER_WORD + k: _pack(row) for k, row in enumerate(x)}
        self.out_base, self.words = out_ext(words) // BYTES_PER_WORD, words
        self.pending: deque[int] = deque()
        self.fetched = self.errors = 0
        self.ins_data = StreamDriver(dut, "ins_data", dut.clk, p_valid=1.0, rng=random.Random(0))
        self.rd_data = StreamDriver(dut, "rd_data", dut.clk, p_valid=1.0, rng=random.Random(0))
        StreamMonitor(dut, "ins_req", dut.clk, self._ins, p_ready=1.0)
        StreamMonitor(dut, "rd_req", dut.clk, self._rd, p_ready=1.0)
        StreamMonitor(dut, "wr_req", dut.clk, self._wr, p_ready=1.0)
        StreamMonitor(dut, "wr_data", dut.clk, self._wdata, p_ready=1.0)

    @staticmethod
    def _split(p: int) -> tuple[int, int]:
        return p & ((1 << ADDR_BITS) - 1), (p >> ADDR_BITS) & 0xFF

    def _ins(self, p: int) -> None:
        addr, beats = self._split(p)
        for i in range(beats):
            self.ins_data.append(self.imem.get(addr // 16 + i, 0))
        self.fetched += beats

    def _rd(self, p: int) -> None:
        addr, beats = self._split(p)
        for i in range(beats):
            self.rd_data.append(self.ext.get(addr // BYTES_PER_WORD + i, 0))

    def _wr(self, p: int) -> None:
        addr, beats = self._split(p)
        self.pending.extend(range(addr // BYTES_PER_WORD, addr // BYTES_PER_WORD + beats))

    def _wdata(self, p: int) -> None:
        if self.pending:
            self.ext[self.pending.popleft()] = p
        else:
            self.errors += 1

    clear_output, output = ZeroWaitMemory.clear_output, ZeroWaitMemory.output

    def edge(self) -> None:  # the BFM coroutines do the work
        pass

    def sample(self) -> bool:
        return bool(int(self.dut.done.value))


@cocotb.test()
async def sim_speed_stream_bfm(dut):
    """The program on the project's stream BFMs (one coroutine per stream), no stalls."""
    from cocotb.triggers import ReadOnly, RisingEdge

    words, repeat, x = _env_workload()
    mem = _BfmMemory(dut, words, x)
    await _cocotb_reset(dut)
    edge, settled = RisingEdge(dut.clk), ReadOnly()
    res = await run_program(mem, lambda: edge, lambda: settled, lambda v: _cocotb_put(dut.start, v), repeat, words)
    _write_json("verilator_bfm", {**res, "error": int(dut.error.value)})


def run_verilator(acc, words: int, repeat: int, seed: int, build_dir: Path, bfm: bool = True) -> dict:
    """Convert, build and run on Verilator with ``simulators.runner.run_cocotb``; one build for both tests."""
    from simulators.runner import run_cocotb, write_verilog

    build_dir.mkdir(parents=True, exist_ok=True)
    out = build_dir / "sim_speed.json"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    verilog = write_verilog(acc, build_dir, "top")
    t_convert = time.perf_counter() - t0
    env = {"SIM_SPEED_WORDS": str(words), "SIM_SPEED_REPEAT": str(repeat), "SIM_SPEED_SEED": str(seed),
           "SIM_SPEED_JSON": str(out)}
    t0 = time.perf_counter()
    run_cocotb(verilog, "sim_speed", build_dir=build_dir, test_dir=Path(__file__).resolve().parent,
               extra_env=env, testcase=None if bfm else "sim_speed_zero_wait")
    t_cocotb = time.perf_counter() - t0
    res = json.loads(out.read_text())
    overhead = t_convert + t_cocotb - sum(r["wall_s"] for r in res.values())
    for r in res.values():
        r["build_s"] = overhead   # conversion + Verilator compile + simulator/cocotb start-up, shared
        r["convert_s"] = t_convert
    return res


# --------------------------------------------------------------------------- Amaranth

def run_amaranth(acc, words: int, repeat: int, seed: int) -> dict:
    """Run the program in ``amaranth.sim.Simulator``: one async testbench, the same model and loop."""
    from amaranth.hdl import Value
    from amaranth.sim import Simulator

    x = activations(words, seed)
    sig = {}
    for name in ZeroWaitMemory.PORTS:
        port, _, member = name.partition("__")
        sig[name] = Value.cast(getattr(getattr(acc, port), member) if member else getattr(acc, port))
    t0 = time.perf_counter()
    sim = Simulator(acc)
    sim.add_clock(1e-8)
    t_build = time.perf_counter() - t0
    res = {}

    async def bench(ctx):
        mem = ZeroWaitMemory(sig, ctx.get, ctx.get, ctx.set, words, x)
        mem.reset()
        ctx.set(acc.prog_addr, PROG_BASE)
        await ctx.tick().repeat(3)   # cocotb's two reset cycles and one more
        res.update(await run_program(mem, ctx.tick, None, lambda v: ctx.set(acc.start, v), repeat, words))
        res["error"] = ctx.get(acc.error)

    sim.add_testbench(bench)
    sim.run()
    res["build_s"] = t_build
    return res


# --------------------------------------------------------------------------- checks and table

def check(res: dict, want: np.ndarray, n_instr: int, repeat: int) -> list[str]:
    """Problems of one simulator's runs (empty: every run bit-exact, no error, each instruction fetched once)."""
    got = np.array([_unpack(int(h, 16)) for h in res["out"]], dtype=np.int64)
    problems = []
    bad = np.argwhere(got != want)
    if bad.size:
        i = tuple(bad[0])
        problems.append(f"{len(bad)} of {want.size} results differ, first at (word, lane) {tuple(int(v) for v in i)}: "
                        f"got {got[i]} want {want[i]}")
    if res["runs_differing"]:
        problems.append(f"{res['runs_differing']} of {repeat} runs gave other results than the first")
    if res["error"]:
        problems.append("error output set")
    if res["fetched"] != n_instr * repeat:
        problems.append(f"{res['fetched']} instructions fetched, expected {n_instr * repeat}")
    if res["mem_errors"]:
        problems.append(f"{res['mem_errors']} memory protocol errors")
    if len(res["run_cycles"]) != 1:
        problems.append(f"runs took different cycle counts {res['run_cycles']}")
    return problems


def _takes_ops() -> bool:
    import inspect

    from fpga.hdl.top import Accelerator

    return "ops" in inspect.signature(Accelerator.__init__).parameters


def _ops_text(all_ops: bool) -> str:
    return ", ops={Op.GELU}" if not all_ops and _takes_ops() else ""


def make_top(buffer_words: int, all_ops: bool = False):
    """The top for both simulators: only the GELU engine unless ``all_ops`` (or the top cannot leave engines out)."""
    from fpga.config import AcceleratorConfig
    from fpga.hdl.top import Accelerator

    if all_ops or not _takes_ops():
        return Accelerator(AcceleratorConfig(), buffer_words=buffer_words)
    return Accelerator(AcceleratorConfig(), buffer_words=buffer_words, ops={Op.GELU})


LABELS = {"verilator": "Verilator + cocotb, shared model (1 coroutine)",
          "verilator_bfm": "Verilator + cocotb, stream_bfm (7 coroutines)",
          "amaranth": "Amaranth pysim, shared model (1 testbench)"}


def main(argv=None) -> dict:
    """Run both simulators, check them, print the table; return the measurements."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--words", type=int, default=DEFAULT_WORDS,
                    help=f"256-bit words of activations, 8 per word (default {DEFAULT_WORDS})")
    ap.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                    help=f"runs of the program, back to back (default {DEFAULT_REPEAT})")
    ap.add_argument("--buffer-words", type=int, default=None,
                    help=f"on-chip buffer depth, both simulators (default max({DEFAULT_BUFFER_WORDS}, 2 * words))")
    ap.add_argument("--all-ops", action="store_true",
                    help="build every compute engine (default: only GELU, the program's one compute op)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bfm", action="store_true", help="skip the Verilator run on stream_bfm's coroutines")
    ap.add_argument("--build-dir", type=Path, default=None, help="Verilator build folder (default: a temporary one)")
    args = ap.parse_args(argv)
    words, repeat = args.words, args.repeat
    buffer_words = args.buffer_words or max(DEFAULT_BUFFER_WORDS, 2 * words)
    if words < 1 or repeat < 1 or 2 * words > buffer_words or words >= 1 << 16:
        ap.error(f"need 1 <= words < 65536, repeat >= 1 and 2 * words <= buffer_words "
                 f"(words={words}, repeat={repeat}, buffer_words={buffer_words})")

    from fpga.config import AcceleratorConfig
    from hwgen.numerics.gelu import gelu_codes

    config = AcceleratorConfig()
    if config.mem_port_bits != DATA_BITS:
        raise SystemExit(f"this benchmark assumes a {DATA_BITS}-bit port, the config has {config.mem_port_bits}")
    want = gelu_codes(activations(words, args.seed), ACT, ACT)
    n_instr = len(program(words))
    print(f"Accelerator(AcceleratorConfig(), buffer_words={buffer_words}{_ops_text(args.all_ops)}) in both simulators; "
          f"LOAD/SYNC/GELU/STORE/END on {words} words ({words * LANES} fixed<32,10>) x {repeat} runs; "
          f"zero-wait memory; seed {args.seed}", flush=True)

    t0 = time.perf_counter()
    acc = make_top(buffer_words, args.all_ops)
    t_acc = time.perf_counter() - t0
    runs = {"amaranth": run_amaranth(acc, words, repeat, args.seed)}
    runs["amaranth"]["build_s"] += t_acc
    with tempfile.TemporaryDirectory(prefix="sim_speed_") as tmp:
        runs.update(run_verilator(make_top(buffer_words, args.all_ops), words, repeat, args.seed,
                                  args.build_dir or Path(tmp), bfm=not args.no_bfm))

    problems = {}
    for key, r in runs.items():
        r["problems"] = check(r, want, n_instr, repeat)
        if r["problems"]:
            problems[key] = r["problems"]
        r["cycles_per_s"] = r["cycles"] / r["wall_s"]
    run_cycles = {k: r["run_cycles"] for k, r in runs.items()}
    same_cycles = len({(r["cycles"], tuple(r["run_cycles"])) for r in runs.values()}) == 1
    ratio = runs["verilator"]["cycles_per_s"] / runs["amaranth"]["cycles_per_s"]

    order = [k for k in ("verilator", "verilator_bfm", "amaranth") if k in runs]
    w = max(len(LABELS[k]) for k in order)
    print(f"\n{'simulator':<{w}}  {'cycles':>8}  {'wall s':>7}  {'cycles/s':>9}  {'vs Amaranth':>11}  "
          f"{'build s':>7}  bit-exact")
    for k in order:
        r = runs[k]
        print(f"{LABELS[k]:<{w}}  {r['cycles']:>8}  {r['wall_s']:>7.3f}  {r['cycles_per_s']:>9,.0f}  "
              f"{r['cycles_per_s'] / runs['amaranth']['cycles_per_s']:>10.1f}x  {r['build_s']:>7.1f}  "
              f"{'yes' if not r['problems'] else 'NO'}")
    print(f"\nVerilator/Amaranth: {ratio:.1f}x (same model and loop). One run of the program: "
          f"{', '.join(f'{k} {v}' for k, v in run_cycles.items())} cycles; cycles agree: "
          f"{'yes' if same_cycles else 'NO'}.")
    print("cycles: clock edges in the timed loop (each run + its start edge + one edge after done); wall s: that "
          "loop only. build s: Verilator = Verilog conversion "
          f"({runs['verilator']['convert_s']:.1f} s) + Verilator compile + cocotb start-up; "
          "Amaranth = elaboration + Simulator().")
    for k, p in problems.items():
        print(f"{k}: " + "; ".join(p))
    return {"words": words, "repeat": repeat, "buffer_words": buffer_words, "all_ops": args.all_ops or not _takes_ops(),
            "runs": runs, "ratio": ratio,
            "same_cycles": same_cycles, "bit_exact": not problems}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["bit_exact"] and result["same_cycles"] else 1)
