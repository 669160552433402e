"""cocotb bus-functional models for Amaranth ``lib.stream`` ports, and an in-order checker.

An Amaranth stream port ``name`` appears in Verilog as ``name__payload``,
``name__valid`` and ``name__ready``. Payloads are packed integers; :func:`pack` and
:func:`unpack` convert them from and to fields (``StructLayout`` fields and
``ArrayLayout`` elements start at bit 0 in the order declared).

Random stalls: a :class:`StreamDriver` starts a beat only with probability
``p_valid`` per cycle and then holds it (valid and payload stable) until taken; a
:class:`StreamMonitor` raises ready with probability ``p_ready`` per cycle.

On a 4-state simulator (Icarus) a :class:`StreamMonitor` fails with the signal's value
when ``valid`` is X/Z in any cycle, or the payload of a taken beat has X/Z bits.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Callable, Iterable

from cocotb import start_soon
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["pack", "unpack", "StreamDriver", "StreamMonitor", "InOrderChecker"]


def pack(fields: Iterable[tuple[int, int]]) -> int:
    """``[(value, bits), ...]`` (first field at bit 0) -> one unsigned integer."""
    word, pos = 0, 0
    for value, bits in fields:
        word |= (int(value) & ((1 << bits) - 1)) << pos
        pos += bits
    return word


def unpack(word: int, widths: Iterable[tuple[int, bool]]) -> list[int]:
    """One integer -> ``[field, ...]`` for ``[(bits, signed), ...]`` (first at bit 0)."""
    out = []
    for bits, signed in widths:
        v = word & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
        word >>= bits
    return out


class StreamDriver:
    """Drives beats (packed ints) into a stream sink of the DUT."""

    def __init__(self, dut, name: str, clk, p_valid: float = 1.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.p_valid = clk, p_valid
        self.rng = rng or random.Random(0)
        self.queue: deque[int] = deque()
        self.sent = 0
        self.valid.value = 0
        self.payload.value = 0
        self._task = start_soon(self._run())

    def append(self, beat: int) -> None:
        self.queue.append(beat)

    async def _run(self) -> None:
        holding = False
        while True:
            await RisingEdge(self.clk)
            if not holding and self.queue and self.rng.random() < self.p_valid:
                self.payload.value = self.queue[0]
                holding = True
            self.valid.value = int(holding)
            await ReadOnly()
            if holding and int(self.ready.value):
                self.queue.popleft()
                self.sent += 1
                holding = False


class StreamMonitor:
    """Takes beats from a stream source of the DUT and hands them to ``callback``."""

    def __init__(self, dut, name: str, clk, callback: Callable[[int], None], p_ready: float = 1.0,
                 rng: random.Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.clk, self.callback, self.p_ready = name, clk, callback, p_ready
        self.rng = rng or random.Random(1)
        self.received = 0
        self.cycle = 0
        self.ready.value = 0
        self._task = start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            self.ready.value = int(self.rng.random() < self.p_ready)
            await ReadOnly()
            valid = self.valid.value
            if not valid.is_resolvable:  # 4-state simulators (Icarus): an X is a failure, said clearly
                raise AssertionError(f"{self.name}__valid is {valid} in cycle {self.cycle}")
            if int(valid) and int(self.ready.value):
                payload = self.payload.value
                if not payload.is_resolvable:
                    raise AssertionError(f"{self.name}__payload has X/Z bits on beat {self.received} "
                                         f"(cycle {self.cycle}): {payload}")
                self.received += 1
                self.callback(payload.to_unsigned())


class InOrderChecker:
    """Compares what the monitor saw with what the model expects, in order."""

    def __init__(self, log, name: str):
        self.log, self.name = log, name
        self.expected: deque = deque()
        self.checked = 0
        self.errors = 0

    def expect(self, item) -> None:
        self.expected.append(item)

    def got(self, item) -> None:
        if not self.expected:
            self.errors += 1
            self.log.error("%s: unexpected beat %r", self.name, item)
            return
        want = self.expected.popleft()
        self.checked += 1
        if item != want:
            self.errors += 1
            if self.errors <= 10:
                self.log.error("%s: beat %d is %r, the model says %r", self.name, self.checked - 1, item, want)
