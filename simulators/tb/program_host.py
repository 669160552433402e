"""The host side of a program run, shared by the controller and top testbenches.

:class:`InstructionMemory` serves 128-bit instruction words on ``ins_req``/``ins_data``
with random stalls; :func:`reset` clocks the DUT (10 ns) and holds reset for two cycles;
:func:`start_program` then pulses ``start`` with ``prog_addr``; :func:`wait_done` counts
cycles until ``done``. The DUT's ports are the controller's (``clk``, ``rst``, ``start``,
``prog_addr``, ``done``, ``ins_req``, ``ins_data``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from stream_bfm import StreamDriver, StreamMonitor, unpack

from fpga.hdl.dma import ADDR_BITS

__all__ = ["InstructionMemory", "reset", "start_program", "wait_done"]


class InstructionMemory:
    """128-bit instruction words at byte address ``base`` behind ins_req/ins_data."""

    def __init__(self, dut, program: list[int], base: int, rng: random.Random):
        self.words = {base // 16 + i: w for i, w in enumerate(program)}
        self.data = StreamDriver(dut, "ins_data", dut.clk, p_valid=0.6, rng=random.Random(rng.random()))
        StreamMonitor(dut, "ins_req", dut.clk, self._req, p_ready=0.6, rng=random.Random(rng.random()))
        self.fetched = 0  # instruction words sent

    def _req(self, payload: int) -> None:
        addr, beats = unpack(payload, [(ADDR_BITS, False), (8, False)])
        for i in range(beats):
            self.data.append(self.words[addr // 16 + i])
            self.fetched += 1


async def reset(dut, prog_base: int) -> None:
    """Start the 10 ns clock, hold reset for two cycles, release it; one more edge."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.prog_addr.value = prog_base
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def start_program(dut, prog_base: int) -> None:
    """:func:`reset`, then pulse ``start`` for one cycle."""
    await reset(dut, prog_base)
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0


async def wait_done(dut, limit: int, drive: Callable[[], None] | None = None,
                    sample: Callable[[], None] | None = None, where: Callable[[], str] = lambda: "") -> int:
    """Cycles from the end of ``start`` until ``done`` is high.

    Each cycle: rising edge, ``drive()`` (set models' inputs), ReadOnly, ``sample()``
    (read outputs), then ``done`` is checked. More than ``limit`` cycles fail the test
    with ``where()`` in the message.
    """
    for cycles in range(1, limit + 1):
        await RisingEdge(dut.clk)
        if drive is not None:
            drive()
        await ReadOnly()
        if sample is not None:
            sample()
        if int(dut.done.value):
            return cycles
    raise AssertionError(f"END not reached in {limit} cycles {where()}".rstrip())
