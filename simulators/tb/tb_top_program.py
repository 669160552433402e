"""cocotb testbench: the accelerator top runs :mod:`top_program`'s program, bit-exact.

Every compute op the top was built with runs on operands LOADed from a Python external
memory (random stalls on every stream); after END, every word the program STOREd must
equal hwgen.numerics' result. Parameters: JSON in HWGEN_TB_PARAMS (``config``: the
AcceleratorConfig as a dict of TOML values, ``ops``: opcode names, ``seed``).
"""

from __future__ import annotations

import os
import random

import cocotb
from engine_tb import tb_params
from program_host import InstructionMemory, start_program, wait_done
from tb_dma import ExternalMemory
from top_program import build

from fpga.isa import Op, encode


def _params():
    config, p = tb_params()
    return config, [Op[o] for o in p["ops"]], int(p.get("seed", 0))


@cocotb.test()
async def every_op_bit_exact(dut):
    config, ops, seed = _params()
    scen = build(config, ops, seed)
    rng = random.Random(seed)
    prog_base = 0x40
    mem = ExternalMemory(dut, config.mem_port_bits, rng)
    mem.words.update(scen["memory"])
    imem = InstructionMemory(dut, [encode(i) for i in scen["program"]], prog_base, rng)
    await start_program(dut, prog_base)
    limit = int(os.environ.get("TB_MAX_CYCLES", "2000000"))
    cycles = await wait_done(dut, limit, where=lambda: f"({imem.fetched} instructions fetched)")
    dut._log.info("program of %d instructions ran in %d cycles", len(scen["program"]), cycles)
    assert int(dut.error.value) == 0, "the top raised error (an op without an engine?)"
    assert imem.fetched == len(scen["program"])
    bad = [(a, scen["names"][a]) for a, w in scen["expect"].items() if mem.words.get(a) != w]
    for a, name in bad[:10]:
        dut._log.error("%s: got %#x, want %#x", name, mem.words.get(a, 0), scen["expect"][a])
    assert not bad, f"{len(bad)} of {len(scen['expect'])} result words differ (first: {bad[0][1]})"
    assert mem.errors == 0
    dut._log.info("%d result words bit-exact", len(scen["expect"]))
