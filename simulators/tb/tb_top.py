"""cocotb testbench of fpga.hdl.top.Accelerator: a real program from fpga.isa.

The program (LOAD a block of activations, GELU into a second block, STORE it, END)
lies in a Python external memory with random stalls on every stream; afterwards the
external memory equals ``hwgen.numerics.gelu.gelu_codes`` of the same data bit for bit.
Environment: TB_DATA_BITS, TB_WORDS (words of activations), TB_SEED.
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from program_host import InstructionMemory, start_program, wait_done
from stream_bfm import pack, unpack
from tb_dma import ExternalMemory

from fpga.isa import Instr, Op, encode
from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.gelu import gelu_codes

ACT = FixedFormat(32, 10)


@cocotb.test()
async def load_gelu_store(dut):
    data_bits, words = int(os.environ["TB_DATA_BITS"]), int(os.environ["TB_WORDS"])
    seed = int(os.environ.get("TB_SEED", "0"))
    rng = random.Random(seed)
    lanes = data_bits // 32
    nrng = np.random.default_rng(seed)
    x = nrng.integers(ACT.qmin, ACT.qmax + 1, size=(words, lanes), dtype=np.int64)
    x[:, :] = np.where(nrng.random((words, lanes)) < 0.7,  # mostly inside the table's range
                       nrng.integers(-7 << 22, 7 << 22, size=(words, lanes)), x)
    x[0, :] = [0, ACT.qmin, ACT.qmax, -1, 1, 5 << 22, -(5 << 22), 11 << 21][:lanes]
    want = gelu_codes(x, ACT, ACT)
    bytes_per_word = data_bits // 8
    in_ext, out_ext = 0x1000, 0x8000
    program = [
        Instr(Op.LOAD, dst=0, length=words, ext_addr=in_ext),
        Instr(Op.SYNC),
        Instr(Op.GELU, src0=0, dst=words, length=words),
        Instr(Op.STORE, src0=words, length=words, ext_addr=out_ext),
        Instr(Op.END),
    ]
    prog_base = 0x40

    mem = ExternalMemory(dut, data_bits, rng)
    imem = InstructionMemory(dut, [encode(i) for i in program], prog_base, rng)
    for k in range(words):
        mem.words[in_ext // bytes_per_word + k] = pack([(v, 32) for v in x[k]])
    await start_program(dut, prog_base)
    cycles = await wait_done(dut, 40 * words + 1000)
    dut._log.info("program of %d instructions ran in %d cycles", len(program), cycles)
    assert int(dut.error.value) == 0
    assert imem.fetched == len(program)
    got = np.array([unpack(mem.words.get(out_ext // bytes_per_word + k, 0), [(32, True)] * lanes)
                    for k in range(words)], dtype=np.int64)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} of {want.size} results differ, first at {bad[0].tolist()}: " \
        f"got {got[tuple(bad[0])]} want {want[tuple(bad[0])]}"
    assert mem.errors == 0
