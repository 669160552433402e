"""Simulated cycles per second of the full accelerator top on three paths, one program.

The program is simulators/tb/top_program.py's every-op program (LINEAR with and without
GELU, ADD, LAYERNORM, GELU, two MOE_ROUTEs, two ATTENTION heads, every result STOREd) for
the default ``AcceleratorConfig`` with every engine, run ``--repeat`` times back to back
(a ``start`` after each ``done``) on

(a) Amaranth's simulator with a Python memory model (``sim_speed.ZeroWaitMemory``, one
    testbench), the path of the Amaranth unit tests;
(b) Verilator under cocotb with the same Python model in one coroutine, woken every clock
    edge (``simulators.runner.run_cocotb``: cocotb's default ``--public-flat-rw`` build), the
    path of today's RTL testbenches;
(c) ``simulators.program_run``: the memory model, instruction fetch and trace inside the
    simulation, Python asleep until ``done``.

All three use a zero-wait memory (program_run's ``latency=1, beat_interval=1`` is the same
timing), so they must take the same cycles per run; every run's STOREd words must equal
``hwgen.numerics`` (top_program's expected words); the script exits non-zero otherwise.
"wall s" is the simulation loop only; "build s" is Verilog conversion + compile (+ cocotb
start-up for (b)); (c)'s build comes from its cache when there is one.

Run: ``python benchmarks/program_speed.py [--repeat R] [--buffer-words B] [--small] [--skip-cocotb]``
(``--small``: ``fpga.config.SMALL``, for the smoke test). This file is also the cocotb test
module of path (b) (``SPEED_PARAMS`` in the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks", ROOT / "simulators" / "tb"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import cocotb  # noqa: E402  (defining the cocotb test needs no simulator)

from sim_speed import ZeroWaitMemory  # noqa: E402

__all__ = ["workload", "run_amaranth", "run_cocotb_path", "run_program_run", "main"]

PROG = 0x40
DEFAULT_REPEAT = 4
DEFAULT_BUFFER_WORDS = 2048   # the every-op program of the default config needs 1,876


def _config(small: bool):
    from fpga.config import SMALL, AcceleratorConfig

    return AcceleratorConfig(**SMALL) if small else AcceleratorConfig()


def workload(config, seed: int = 0) -> dict:
    """top_program's scenario: ``program`` (Instr), ``memory``, ``expect`` (word -> int), ``imem`` (16-byte units)."""
    from top_program import build

    from fpga.hdl.top import ENGINE_OPS
    from fpga.isa import encode

    scen = build(config, list(ENGINE_OPS), seed)
    scen["imem"] = {PROG // 16 + i: encode(ins) for i, ins in enumerate(scen["program"])}
    return scen


async def _loop(mem, tick, settle, set_start, repeat: int, limit: int) -> dict:
    """``repeat`` runs; each: start, then edges until ``done`` (sim_speed.run_program's counting)."""
    run_cycles, edges = [], 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        set_start(1)
        await tick()
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
        await tick()
        edges += cycles + 2
        run_cycles.append(cycles)
    return {"cycles": edges, "run_cycles": run_cycles, "wall_s": time.perf_counter() - t0,
            "fetched": mem.fetched, "mem_errors": mem.errors}


def _result_words(ext: dict, expect: dict) -> dict:
    return {a: ext.get(a, 0) for a in expect}


def run_amaranth(config, buffer_words: int, repeat: int, seed: int) -> dict:
    """Path (a): ``amaranth.sim.Simulator`` and the Python memory model."""
    from amaranth.hdl import Value
    from amaranth.sim import Simulator

    from fpga.hdl.top import Accelerator

    scen = workload(config, seed)
    t0 = time.perf_counter()
    acc = Accelerator(config, buffer_words=buffer_words)
    sig = {}
    for name in ZeroWaitMemory.PORTS:
        port, _, member = name.partition("__")
        sig[name] = Value.cast(getattr(getattr(acc, port), member) if member else getattr(acc, port))
    sim = Simulator(acc)
    sim.add_clock(1e-8)
    build_s = time.perf_counter() - t0
    res = {}

    async def bench(ctx):
        mem = ZeroWaitMemory.from_image(sig, ctx.get, ctx.get, ctx.set, scen["imem"], scen["memory"])
        mem.reset()
        ctx.set(acc.prog_addr, PROG)
        await ctx.tick().repeat(3)
        res.update(await _loop(mem, ctx.tick, None, lambda v: ctx.set(acc.start, v), repeat, 10_000_000))
        res["error"] = ctx.get(acc.error)
        res["words"] = _result_words(mem.ext, scen["expect"])

    sim.add_testbench(bench)
    sim.run()
    return {**res, "build_s": build_s}


@cocotb.test()
async def program_speed_cocotb(dut):
    """Path (b): the Python memory model in one cocotb coroutine."""
    from cocotb.triggers import ReadOnly, RisingEdge
    from program_host import reset

    p = json.loads(os.environ["SPEED_PARAMS"])
    config = _config(p["small"])
    scen = workload(config, p["seed"])

    def put(handle, value):
        handle.value = value

    mem = ZeroWaitMemory.from_image({n: getattr(dut, n) for n in ZeroWaitMemory.PORTS}, lambda h: int(h.value),
                                    lambda h: h.value.to_unsigned(), put, scen["imem"], scen["memory"])
    mem.reset()
    await reset(dut, PROG)
    edge, settled = RisingEdge(dut.clk), ReadOnly()
    res = await _loop(mem, lambda: edge, lambda: settled, lambda v: put(dut.start, v), p["repeat"], 10_000_000)
    res["error"] = int(dut.error.value)
    res["words"] = {str(a): w for a, w in _result_words(mem.ext, scen["expect"]).items()}
    Path(p["out"]).write_text(json.dumps(res))


def run_cocotb_path(config, buffer_words: int, repeat: int, seed: int, small: bool, build_dir: Path) -> dict:
    """Path (b): ``run_cocotb`` builds the top and runs :func:`program_speed_cocotb`."""
    from fpga.hdl.top import Accelerator
    from simulators.runner import run_cocotb, write_verilog

    out = build_dir / "program_speed.json"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    verilog = write_verilog(Accelerator(config, buffer_words=buffer_words), build_dir, "top")
    env = {"SPEED_PARAMS": json.dumps({"small": small, "seed": seed, "repeat": repeat, "out": str(out)})}
    run_cocotb(verilog, "program_speed", build_dir=build_dir, test_dir=Path(__file__).resolve().parent, extra_env=env)
    res = json.loads(out.read_text())
    res["words"] = {int(a): w for a, w in res["words"].items()}
    res["build_s"] = time.perf_counter() - t0 - res["wall_s"]
    return res


def run_program_run(config, buffer_words: int, repeat: int, seed: int) -> dict:
    """Path (c): ``simulators.program_run`` (cached build), zero-wait timing."""
    from simulators.hooks import END, ScriptHook
    from simulators.program_run import add_program, build

    scen = workload(config, seed)
    t0 = time.perf_counter()
    sim = build(config, buffer_words=buffer_words)
    build_s = time.perf_counter() - t0
    memory = add_program(dict(scen["memory"]), PROG, list(scen["imem"].values()), config.mem_port_bits)
    addrs = sorted(scen["expect"])
    hook = ScriptHook({(repeat - 1, END): [("read_ext", a, 1) for a in addrs]})
    r = sim.run(memory, [(PROG, [])] * repeat, hook=hook, latency=1, beat_interval=1)
    words = {a: w[0] for a, w in zip(addrs, r.hook_result[(repeat - 1, END)])}
    return {"cycles": r.cycles, "run_cycles": [p.cycles for p in r.programs], "wall_s": r.wall_s,
            "fetched": sum(len(p.trace) for p in r.programs), "mem_errors": int(r.mem_error),
            "error": int(any(p.error for p in r.programs)), "words": words, "build_s": build_s,
            "build_cached": not sim.built, "compile_s": sim.build_s, "process_s": r.process_s}


def _problems(res: dict, scen: dict, repeat: int) -> list[str]:
    out = []
    bad = [a for a, w in scen["expect"].items() if res["words"].get(a) != w]
    if bad:
        out.append(f"{len(bad)} of {len(scen['expect'])} result words differ (first: {scen['names'][bad[0]]})")
    if res["error"]:
        out.append("error output set")
    if res["fetched"] != len(scen["program"]) * repeat:
        out.append(f"{res['fetched']} instructions, expected {len(scen['program']) * repeat}")
    if res["mem_errors"]:
        out.append("memory protocol errors")
    return out


LABELS = {"amaranth": "(a) Amaranth pysim, Python memory model",
          "cocotb": "(b) Verilator + cocotb, Python memory coroutine",
          "program_run": "(c) Verilator, memory inside (program_run)"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                    help=f"runs of the program (default {DEFAULT_REPEAT})")
    ap.add_argument("--buffer-words", type=int, default=None,
                    help=f"on-chip buffer depth (default: what the program needs, at least {DEFAULT_BUFFER_WORDS}, or 512 with --small)")
    ap.add_argument("--small", action="store_true", help="fpga.config.SMALL instead of the default configuration")
    ap.add_argument("--skip-cocotb", action="store_true", help="leave out path (b) (its build takes minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-dir", type=Path, default=None, help="path (b)'s build folder (default: temporary)")
    args = ap.parse_args(argv)
    config = _config(args.small)
    buffer_words = args.buffer_words
    scen = workload(config, args.seed)
    if buffer_words is None:  # what the program needs, rounded up to 256 words
        buffer_words = max(512 if args.small else DEFAULT_BUFFER_WORDS, -(-scen["buffer_words"] // 256) * 256)
    if scen["buffer_words"] > buffer_words or args.repeat < 1:
        ap.error(f"the program needs {scen['buffer_words']} buffer words and repeat >= 1")
    print(f"{'SMALL' if args.small else 'default'} AcceleratorConfig, every engine, buffer_words={buffer_words}; "
          f"top_program's every-op program ({len(scen['program'])} instructions) x {args.repeat} runs; "
          f"zero-wait memory; seed {args.seed}", flush=True)
    runs = {"program_run": run_program_run(config, buffer_words, args.repeat, args.seed)}
    runs["amaranth"] = run_amaranth(config, buffer_words, args.repeat, args.seed)
    if not args.skip_cocotb:
        with tempfile.TemporaryDirectory(prefix="program_speed_") as tmp:
            runs["cocotb"] = run_cocotb_path(config, buffer_words, args.repeat, args.seed, args.small,
                                             args.build_dir or Path(tmp))
    for r in runs.values():
        r["problems"] = _problems(r, scen, args.repeat)
        r["cycles_per_s"] = r["cycles"] / r["wall_s"]
    base = runs["amaranth"]["cycles_per_s"]
    ratio = runs["program_run"]["cycles_per_s"] / base
    same_cycles = len({tuple(r["run_cycles"]) for r in runs.values()}) == 1
    order = [k for k in ("amaranth", "cocotb", "program_run") if k in runs]
    w = max(len(LABELS[k]) for k in order)
    print(f"\n{'path':<{w}}  {'cycles':>9}  {'wall s':>8}  {'cycles/s':>9}  {'vs (a)':>7}  {'build s':>7}  bit-exact")
    for k in order:
        r = runs[k]
        print(f"{LABELS[k]:<{w}}  {r['cycles']:>9,}  {r['wall_s']:>8.3f}  {r['cycles_per_s']:>9,.0f}  "
              f"{r['cycles_per_s'] / base:>6.1f}x  {r['build_s']:>7.1f}  {'yes' if not r['problems'] else 'NO'}")
    pr = runs["program_run"]
    print(f"\n(c)/(a) = {ratio:.1f}x. Cycles per run: {runs['amaranth']['run_cycles'][0]:,}; all paths agree: "
          f"{'yes' if same_cycles else 'NO ' + str({k: r['run_cycles'] for k, r in runs.items()})}. "
          f"(c)'s build: {'from the cache' if pr['build_cached'] else 'compiled now'} "
          f"(compile {pr['compile_s']:.0f} s when made); its simulator process took {pr['process_s']:.1f} s "
          f"(start-up, memory load).")
    problems = {k: r["problems"] for k, r in runs.items() if r["problems"]}
    for k, p in problems.items():
        print(f"{k}: " + "; ".join(p))
    return {"runs": runs, "ratio": ratio, "same_cycles": same_cycles, "bit_exact": not problems,
            "buffer_words": buffer_words, "repeat": args.repeat}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["bit_exact"] and result["same_cycles"] else 1)
