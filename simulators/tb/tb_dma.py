"""cocotb testbench of fpga.hdl.dma.Dma: a Python external memory with random stalls.

Random LOAD and STORE commands; a Python model of the buffer and the external memory
predicts every word; at the end the external memory equals the model bit for bit.
Environment: TB_DATA_BITS, TB_DEPTH, TB_BURST, TB_N (commands), TB_SEED.
"""

from __future__ import annotations

import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from stream_bfm import StreamDriver, StreamMonitor, pack, unpack

from fpga.hdl.dma import ADDR_BITS, LEN_BITS


class ExternalMemory:
    """Word-addressed external memory behind rd_req/rd_data and wr_req/wr_data."""

    def __init__(self, dut, data_bits: int, rng: random.Random):
        self.bytes_per_beat = data_bits // 8
        self.words: dict[int, int] = {}
        self.errors = 0
        self.log = dut._log
        self.rd_data = StreamDriver(dut, "rd_data", dut.clk, p_valid=0.7, rng=random.Random(rng.random()))
        StreamMonitor(dut, "rd_req", dut.clk, self._read, p_ready=0.5, rng=random.Random(rng.random()))
        StreamMonitor(dut, "wr_req", dut.clk, self._write_req, p_ready=0.5, rng=random.Random(rng.random()))
        StreamMonitor(dut, "wr_data", dut.clk, self._write_data, p_ready=0.7, rng=random.Random(rng.random()))
        self.pending: deque[int] = deque()  # word addresses of accepted write bursts, beat by beat

    def _word(self, byte_addr: int) -> int:
        if byte_addr % self.bytes_per_beat:
            self.errors += 1
            self.log.error("unaligned address %#x", byte_addr)
        return byte_addr // self.bytes_per_beat

    def _read(self, payload: int) -> None:
        addr, beats = unpack(payload, [(ADDR_BITS, False), (8, False)])
        w = self._word(addr)
        for i in range(beats):
            self.rd_data.append(self.words.get(w + i, 0))

    def _write_req(self, payload: int) -> None:
        addr, beats = unpack(payload, [(ADDR_BITS, False), (8, False)])
        w = self._word(addr)
        self.pending.extend(range(w, w + beats))

    def _write_data(self, payload: int) -> None:
        if not self.pending:
            self.errors += 1
            self.log.error("write data beat without a write request")
            return
        self.words[self.pending.popleft()] = payload


@cocotb.test()
async def random_load_store_with_stalls(dut):
    data_bits, depth = int(os.environ["TB_DATA_BITS"]), int(os.environ["TB_DEPTH"])
    burst, n = int(os.environ["TB_BURST"]), int(os.environ["TB_N"])
    seed = int(os.environ.get("TB_SEED", "0"))
    rng = random.Random(seed)
    abits = max(1, (depth - 1).bit_length())

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    mem = ExternalMemory(dut, data_bits, rng)
    ext_words = 4 * depth
    for w in range(ext_words):  # random contents, with all-ones and zero words
        mem.words[w] = rng.choice([0, (1 << data_bits) - 1, rng.getrandbits(data_bits)])
    model_ext = dict(mem.words)
    model_buf = [None] * depth
    cmd = StreamDriver(dut, "cmd", dut.clk, p_valid=0.8, rng=random.Random(seed + 7))
    dut.rd_addr.value = 0
    dut.wr_en.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0

    done = 0
    lengths = [1, burst, burst + 1, 2 * burst, depth]
    for k in range(n):
        length = lengths[k // 2] if k < 2 * len(lengths) else rng.randrange(1, depth + 1)
        buf_addr = rng.randrange(0, depth - length + 1)
        ext_word = rng.randrange(0, ext_words - length + 1)
        # a STORE only of buffer words written before (the buffer has no reset value)
        written = [i for i in range(depth - length + 1)
                   if all(model_buf[j] is not None for j in range(i, i + length))]
        store = k % 2 == 1 and bool(written)
        if store:
            buf_addr = rng.choice(written)
            for i in range(length):
                model_ext[ext_word + i] = model_buf[buf_addr + i]
        else:
            for i in range(length):
                model_buf[buf_addr + i] = model_ext[ext_word + i]
        cmd.append(pack([(int(store), 1), (ext_word * data_bits // 8, ADDR_BITS),
                         (buf_addr, abits), (length, LEN_BITS)]))
        cycles = 0
        while done <= k:
            await RisingEdge(dut.clk)
            await ReadOnly()
            done += int(dut.done.value)
            cycles += 1
            assert cycles < 20 * length + 200, f"command {k} did not finish"
    await ClockCycles(dut.clk, 5)
    # the units' read port sees the buffer
    for a in range(0, depth, max(1, depth // 16)):
        if model_buf[a] is None:
            continue
        await RisingEdge(dut.clk)
        dut.rd_addr.value = a
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert dut.rd_word.value.to_unsigned() == model_buf[a], f"buffer word {a}"
    bad = [w for w in model_ext if mem.words.get(w) != model_ext[w]]
    assert not bad, f"{len(bad)} external words differ, first at word {bad[0]}"
    assert mem.errors == 0
    assert not mem.pending
