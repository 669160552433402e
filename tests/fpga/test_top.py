"""Accelerator top: programs assembled with fpga.isa run on Verilator, bit-exact."""

from __future__ import annotations

import json

import pytest

from fpga.config import SMALL, AcceleratorConfig
from fpga.hdl.top import ENGINE_OPS, Accelerator
from fpga.isa import Op
from simulators.runner import run_cocotb

ALL_OPS = list(ENGINE_OPS)


@pytest.mark.rtl
def test_cocotb_verilator_load_gelu_store(tmp_path):
    words = 128  # 1,024 activations at 8 lanes per 256-bit word
    acc = Accelerator(AcceleratorConfig(), buffer_words=2 * words, ops=[Op.GELU])
    env = {"TB_DATA_BITS": "256", "TB_WORDS": str(words), "TB_SEED": "3"}
    run_cocotb(acc, "tb_top", build_dir=tmp_path, extra_env=env)


@pytest.mark.rtl
@pytest.mark.slow
def test_cocotb_verilator_every_op(tmp_path):
    """LINEAR (+GELU), ADD, LAYERNORM (+ row stride), GELU, MOE_ROUTE, ATTENTION and a whole
    MoE layer (gate LINEAR, MOE_ROUTE with a row stride, MOE_GATHER / LINEAR with rows from
    moe_rows / MOE_COMBINE for every expert and chunk) in one program, bit-exact."""
    config = AcceleratorConfig(**SMALL)
    acc = Accelerator(config, buffer_words=640, ops=ALL_OPS)
    params = {"config": config.to_dict(), "ops": [o.name for o in ALL_OPS], "seed": 5}
    run_cocotb(acc, "tb_top_program", build_dir=tmp_path, extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})
