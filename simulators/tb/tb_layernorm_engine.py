"""cocotb testbench of the LAYERNORM engine (``fpga.hdl.engine_layernorm``).

The DUT is :class:`simulators.engine_harness.EngineHarness` around a
:class:`~fpga.hdl.engine_layernorm.LayerNormEngine`: the top's buffer reader, a Python
buffer behind its synchronous read port and the ``wr`` stream. Instructions of random
rows (row lengths with fewer and more words than the reciprocal square root's cycles,
partial last words, a row-stride override, no rows) run first without stalls, where the
cycles from ``start`` to ``done`` must equal
:func:`~fpga.hdl.engine_layernorm.layernorm_cycles`, then with random stalls on the read
requests, the read data and the writes. After every instruction the whole buffer must
equal the model: Y rows from :func:`hwgen.numerics.layernorm.layernorm_codes` (lanes past
D written 0), every other word unchanged.

Parameters: JSON in ``HWGEN_TB_PARAMS``: ``lanes``, ``max_n``, ``width``, ``int_bits``,
``seed``, ``p_rd``, ``p_data``, ``p_wr``.
"""

from __future__ import annotations

import json
import os
import random
from types import SimpleNamespace

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from engine_tb import engine_args, run_instr
from tb_moe_expert import Buffer, Words, _diff

from fpga.hdl.engine_layernorm import layernorm_cycles
from fpga.hdl.layernorm import eps_code
from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.layernorm import layernorm_codes

X_BASE, G_BASE, Y_BASE = 0, 1000, 1300


@cocotb.test()
async def rows_match_reference(dut):
    p = json.loads(os.environ["HWGEN_TB_PARAMS"])
    lanes, max_n = p["lanes"], p["max_n"]
    fmt = FixedFormat(p["width"], p["int_bits"])
    w = Words(lanes, fmt.width)
    rng = np.random.default_rng(p["seed"])
    bits = random.Random(p["seed"] + 1)
    buf = Buffer(dut, random.Random(p["seed"]), 1.0, 1.0, 1.0)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.args.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    config = SimpleNamespace(lanes=lanes)
    # (rows, D, extra stride words, eps < 2**32 / 2**(2F)): W below and above the square root's 43 cycles
    cases = [(4, max_n, 0, 1e-5), (3, 5 * lanes + 3, 2, 1e-4), (5, 2 * lanes, 0, 1e-5), (0, 8, 0, 1e-5),
             (2, 1, 1, 1e-5), (3, max_n - lanes + 1, 0, 2e-4)]
    errors: list[str] = []
    n_rows = 0
    for stalls in (False, True):
        if stalls:
            buf.set_stalls(p["p_rd"], p["p_data"], p["p_wr"])
        for case, (rows, d, extra, eps) in enumerate(cases):
            nw = -(-d // lanes)
            stride = nw + extra
            x = np.clip(np.round(rng.normal(rng.normal(0, 2), rng.uniform(0.01, 4), (rows, d)) * 2.0 ** fmt.frac_bits),
                        fmt.qmin, fmt.qmax).astype(np.int64)
            if case == 0:
                x[0], x[1], x[2] = 0, np.where(np.arange(d) % 2 == 0, fmt.qmin, fmt.qmax), fmt.qmin
            full = case == 1
            g = (rng.integers(fmt.qmin, fmt.qmax + 1, d) if full
                 else np.round(rng.normal(1, 0.5, d) * 2.0 ** fmt.frac_bits).astype(np.int64))
            b = (rng.integers(fmt.qmin, fmt.qmax + 1, d) if full
                 else np.round(rng.normal(0, 1, d) * 2.0 ** fmt.frac_bits).astype(np.int64))
            y = layernorm_codes(x, g, b, fmt, fmt, fmt, fmt, eps=eps) if rows else x
            mem: dict[int, int] = {}
            for t in range(rows):  # X rows: garbage past D and in the stride's extra words
                for k in range(stride):
                    row_words = [int(v) for v in x[t, k * lanes:(k + 1) * lanes]]
                    mem[X_BASE + t * stride + k] = (w.pack(row_words) | (bits.getrandbits(fmt.width * lanes)
                                                    >> (fmt.width * len(row_words)) << (fmt.width * len(row_words))))
            pad = [0] * (nw * lanes - d)
            for k in range(nw):
                mem[G_BASE + k] = w.pack((list(g) + pad)[k * lanes:(k + 1) * lanes])
                mem[G_BASE + nw + k] = w.pack((list(b) + pad)[k * lanes:(k + 1) * lanes])
            for i in range(max(rows, 1) * stride):
                mem[Y_BASE + i] = bits.getrandbits(fmt.width * lanes)
            buf.words = dict(mem)
            want = dict(mem)
            for t in range(rows):
                for k in range(nw):
                    want[Y_BASE + t * stride + k] = w.pack((list(y[t]) + pad)[k * lanes:(k + 1) * lanes])
            ins = dict(src0=X_BASE, src1=G_BASE, dst=Y_BASE, length=rows, aux=d, ext_addr=stride if extra else 0)
            cycles, _ = await run_instr(dut, engine_args(**ins), {"eps_code": eps_code(eps, fmt)})
            errors += _diff(buf.words, want, f"case {case} (rows {rows}, D {d}, stalls {stalls})")
            documented = layernorm_cycles(rows, d, config)
            dut._log.info("case %d: %d rows of %d, %d cycles (documented %d), stalls %s", case, rows, d, cycles,
                          documented, stalls)
            if not stalls and cycles != documented:
                errors.append(f"case {case}: {cycles} cycles, layernorm_cycles says {documented}")
            n_rows += rows
    for e in errors[:10]:
        dut._log.error(e)
    assert not errors, errors[0]
    assert n_rows > 30
