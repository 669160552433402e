"""Shared pieces of the engine and top testbenches: parameters and instruction fields.

:func:`tb_params` reads the JSON in ``HWGEN_TB_PARAMS`` and the accelerator configuration
it carries (``config``: :class:`~fpga.config.AcceleratorConfig` fields as TOML values);
:func:`engine_args` packs an instruction's fields into an engine's ``args`` port;
:func:`run_instr` starts one instruction on an engine and counts its cycles to ``done``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from cocotb.triggers import ReadOnly, RisingEdge

from fpga.config import AcceleratorConfig
from fpga.isa import FIELDS

__all__ = ["tb_params", "engine_args", "run_instr"]


def tb_params() -> tuple[AcceleratorConfig, dict]:
    """``(config, params)`` from ``HWGEN_TB_PARAMS``."""
    p = json.loads(os.environ["HWGEN_TB_PARAMS"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acc.toml"
        path.write_text("[accelerator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in p["config"].items()))
        config = AcceleratorConfig.from_toml(path)
    return config, p


def engine_args(**fields) -> int:
    """The engine's ``args`` port: every instruction field but the opcode, flags at bit 0."""
    word, pos = 0, 0
    for name, _, width in FIELDS[1:]:
        word |= (fields.get(name, 0) & ((1 << width) - 1)) << pos
        pos += width
    return word


async def run_instr(dut, args: int, inputs: dict | None = None, outputs: tuple[str, ...] = (),
                    limit: int = 200_000) -> tuple[int, dict]:
    """Pulse ``start`` with ``args`` and the register ``inputs`` (left driven); wait for ``done``.

    Returns (cycles from the cycle after ``start`` to ``done`` inclusive, the DUT's
    ``outputs`` that exist, sampled with ``done``)."""
    await RisingEdge(dut.clk)
    dut.args.value = args
    dut.start.value = 1
    for name, value in (inputs or {}).items():
        getattr(dut, name).value = value
    await RisingEdge(dut.clk)
    dut.start.value = 0
    dut.args.value = 0
    for cycles in range(1, limit):
        await ReadOnly()
        if int(dut.done.value):
            return cycles, {name: int(getattr(dut, name).value) for name in outputs if hasattr(dut, name)}
        await RisingEdge(dut.clk)
    raise AssertionError(f"done not seen in {limit} cycles")
