"""cocotb side of simulators/program_run.py: run programs on ``hwgen_program_top``, asleep between events.

The plan (pickle, path in ``$HWGEN_PROGRAM_RUN``) holds ``programs`` ``[(prog_addr,
checkpoints)]``, ``hook``, ``max_cycles`` (per program), ``clock`` ("gpi": start cocotb's
C-level clock on ``clk``; "internal": the Verilog makes it) and ``result`` (where the
result pickle goes). Per program: pulse ``start``; for each checkpoint set ``watch_pc``
and sleep until the wrapper's ``stop`` (or the cycle budget's Timer); call the hook
while the accelerator waits; then sleep until ``done``. The memory model, the trace and
the cycle counter live in the Verilog; Python wakes a few times per program only.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.handle import Immediate
from cocotb.triggers import First, ReadWrite, RisingEdge, Timer

__all__ = ["SimContext"]


class SimContext:
    """What a hook sees: external memory and buffer words (``mem_port_bits`` each), cycles."""

    def __init__(self, dut, start_edge: int):
        self._dut = dut
        self._mem = dut.ext_mem.mem
        self._buf = None
        self.program_start = start_edge

    @property
    def cycles(self) -> int:
        """Clock edges since this program's start edge."""
        return int(self._dut.cycles.value) - 1 - self.program_start

    def _buffer(self):
        if self._buf is None:
            self._buf = self._dut.dut.dma.buf
        return self._buf

    @staticmethod
    def _read(array, addr: int, n: int) -> list[int]:
        return [array[a].value.to_unsigned() for a in range(addr, addr + n)]

    @staticmethod
    def _write(array, addr: int, words) -> None:
        for a, w in enumerate(words, addr):
            array[a].value = Immediate(int(w))

    def read_ext(self, word_addr: int, n: int) -> list[int]:
        return self._read(self._mem, word_addr, n)

    def write_ext(self, word_addr: int, words) -> None:
        self._write(self._mem, word_addr, words)

    def read_buf(self, word_addr: int, n: int) -> list[int]:
        return self._read(self._buffer(), word_addr, n)

    def write_buf(self, word_addr: int, words) -> None:
        self._write(self._buffer(), word_addr, words)


class _Runner:
    def __init__(self, dut, plan: dict):
        self.dut, self.plan = dut, plan
        self.hook = plan["hook"]
        self.period_ns = plan["period_ns"]
        self.hook_s = 0.0

    def edges(self) -> int:
        return int(self.dut.cycles.value)

    def call(self, name: str, *args) -> None:
        method = getattr(self.hook, name, None)
        if method is not None:
            t0 = time.perf_counter()
            method(*args)
            self.hook_s += time.perf_counter() - t0

    async def wait_stop(self, deadline: int) -> bool:
        """Sleep until ``stop`` is high (True) or the edge count reaches ``deadline`` (False)."""
        dut = self.dut
        while True:
            await ReadWrite()  # the design settled after our writes
            if int(dut.stop.value):
                return True
            left = deadline - self.edges()
            if left <= 0:
                return False
            await First(RisingEdge(dut.stop), Timer(left * self.period_ns, unit="ns"))

    async def program(self, index: int, addr: int, checkpoints: list[int]) -> dict:
        dut = self.dut
        dut.watch_en.value = 0
        dut.prog_addr.value = addr
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await ReadWrite()
        start = self.edges() - 1                 # the edge that sampled start
        deadline = start + 1 + self.plan["max_cycles"]
        ctx = SimContext(dut, start)
        out = {"start_cycle": start, "finished": False, "error": False}
        for c in checkpoints:
            dut.watch_pc.value = c
            dut.watch_en.value = 1
            if not await self.wait_stop(deadline):
                return out
            if not int(dut.at_watch.value):      # done first: END came before instruction c
                out["failure"] = (f"program {index}: checkpoint {c} not reached, END is instruction "
                                  f"{int(dut.pc.value)}")
                break
            self.call("checkpoint", ctx, index, c)
        dut.watch_en.value = 0
        if not await self.wait_stop(deadline):
            return out
        out["finished"] = True
        out["error"] = bool(int(dut.error.value))
        self.call("after_program", ctx, index)
        await RisingEdge(dut.clk)                # the trace writes END one edge later
        return out


@cocotb.test()
async def program_run(dut):
    plan = pickle.loads(Path(os.environ["HWGEN_PROGRAM_RUN"]).read_bytes())
    run = _Runner(dut, plan)
    if plan["clock"] == "gpi":
        Clock(dut.clk, plan["period_ns"], unit="ns", impl="gpi").start()
    dut.start.value = 0
    dut.watch_en.value = 0
    dut.watch_pc.value = 0
    dut.prog_addr.value = 0
    for _ in range(3):                           # the wrapper holds reset for two edges
        await RisingEdge(dut.clk)
    programs, failure = [], None
    t0 = time.perf_counter()
    edges0 = run.edges()
    for index, (addr, checkpoints) in enumerate(plan["programs"]):
        out = await run.program(index, addr, checkpoints)
        programs.append(out)
        failure = out.pop("failure", None)
        if failure or not out["finished"]:
            break
    wall = time.perf_counter() - t0 - run.hook_s
    mem_error = bool(int(dut.mem_error.value))
    info = None
    if mem_error:
        info = {"code": int(dut.mem_err_code.value), "addr": int(dut.mem_err_addr.value),
                "cycle": int(dut.mem_err_cycle.value)}
    result = {"programs": programs, "wall_s": wall, "hook_s": run.hook_s, "cycles": run.edges() - edges0,
              "mem_error": mem_error, "mem_error_info": info, "failure": failure,
              "hook_result": plan["hook"].result() if hasattr(plan["hook"], "result") else None}
    Path(plan["result"]).write_bytes(pickle.dumps(result))
