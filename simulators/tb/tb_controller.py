"""cocotb testbench of fpga.hdl.controller.Controller: a random program, in-order check.

A Python instruction memory (random stalls) holds a random program assembled with
fpga.isa; Python models of the DMA and of the units answer with random delays. Every
DMA command and unit start must match the program, in order, field by field; END must
raise ``done`` with ``pc`` on the END. Environment: TB_N (instructions), TB_ABITS, TB_SEED.
"""

from __future__ import annotations

import os
import random

import cocotb
from program_host import InstructionMemory, start_program, wait_done
from stream_bfm import InOrderChecker, StreamMonitor, unpack

from fpga.hdl.dma import ADDR_BITS, LEN_BITS
from fpga.isa import Instr, Op, encode

UNIT_OPS = [Op.LINEAR, Op.GELU, Op.LAYERNORM, Op.ATTENTION, Op.ADD, Op.MOE_ROUTE, Op.SET]


def _random_program(rng: random.Random, n: int, abits: int) -> list[Instr]:
    prog = []
    for _ in range(n):
        op = rng.choice([Op.LOAD, Op.STORE, Op.SYNC] + UNIT_OPS)
        prog.append(Instr(op, flags=rng.randrange(16), dst=rng.randrange(1 << abits),
                          src0=rng.randrange(1 << abits), src1=rng.randrange(1 << 16),
                          length=rng.randrange(1 << 16), ext_addr=rng.randrange(1 << 40),
                          aux=rng.randrange(1 << 16)))
    return prog + [Instr(Op.END)]


@cocotb.test()
async def random_program(dut):
    n, abits = int(os.environ["TB_N"]), int(os.environ["TB_ABITS"])
    seed = int(os.environ.get("TB_SEED", "0"))
    rng = random.Random(seed)
    program = _random_program(rng, n, abits)
    base = 0x200
    dut.dma_done.value = 0
    dut.unit_done.value = 0
    imem = InstructionMemory(dut, [encode(i) for i in program], base, rng)
    checker = InOrderChecker(dut._log, "commands")
    for ins in program:
        if ins.op in (Op.LOAD, Op.STORE):
            store = ins.op == Op.STORE
            checker.expect(("dma", int(store), ins.ext_addr, ins.src0 if store else ins.dst, ins.length))
        elif ins.op in UNIT_OPS:
            checker.expect(("unit", int(ins.op), ins.flags, ins.dst, ins.src0, ins.src1, ins.length, ins.aux,
                            ins.ext_addr))
    dma_busy = []

    def on_dma(payload: int) -> None:
        store, ext, buf, length = unpack(payload, [(1, False), (ADDR_BITS, False), (abits, False), (LEN_BITS, False)])
        checker.got(("dma", store, ext, buf, length))
        dma_busy.append(rng.randrange(1, 6))

    StreamMonitor(dut, "dma_cmd", dut.clk, on_dma, p_ready=0.5, rng=random.Random(seed + 3))
    unit_wait = None

    def drive() -> None:  # models of the DMA and the units: done pulses after a random delay
        nonlocal unit_wait
        dut.dma_done.value = 0
        dut.unit_done.value = 0
        if dma_busy:
            dma_busy[0] -= 1
            if dma_busy[0] == 0:
                dma_busy.pop(0)
                dut.dma_done.value = 1
        if unit_wait is not None:
            unit_wait -= 1
            if unit_wait == 0:
                unit_wait = None
                dut.unit_done.value = 1

    def sample() -> None:
        nonlocal unit_wait
        if int(dut.unit_start.value):
            checker.got(("unit", int(dut.unit_op.value), int(dut.unit_flags.value), int(dut.unit_dst.value),
                         int(dut.unit_src0.value), int(dut.unit_src1.value), int(dut.unit_length.value),
                         int(dut.unit_aux.value), int(dut.unit_ext_addr.value)))
            unit_wait = rng.randrange(1, 6)

    await start_program(dut, base)
    await wait_done(dut, 60 * len(program) + 200, drive, sample)
    assert int(dut.pc.value) == len(program) - 1
    assert imem.fetched == len(program)
    assert checker.errors == 0
    assert not checker.expected, f"{len(checker.expected)} commands never issued"
