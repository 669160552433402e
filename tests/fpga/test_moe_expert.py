"""MOE_GATHER and MOE_COMBINE engines: cocotb on Verilator (and Icarus where installed),
bit-exact against hwgen.numerics with random stalls on the buffer's streams."""

from __future__ import annotations

import json

import pytest

from fpga.config import SMALL, AcceleratorConfig
from fpga.hdl.engine_moe_expert import MoeCombineEngine, MoeGatherEngine
from fpga.hdl.top import ENGINE_ADDR_BITS
from simulators.runner import run_cocotb

CASES = {
    # SMALL: 8 lanes, 4 experts, top-2; chunks smaller than the busiest expert's tokens
    "gather-small-k2": ("gather", dict(SMALL), dict(tokens=24, experts=4, chunk=5, rounds=8, min_rows=300)),
    "gather-k1-16e": ("gather", dict(SMALL, moe_experts=16, moe_k=1, moe_normalization="softmax_then_topk"),
                      dict(tokens=40, experts=13, chunk=4, rounds=6, min_rows=200)),
    "combine-small": ("combine", dict(SMALL), dict(tokens=48, experts=4, chunk=8, rounds=30, min_rows=500)),
}


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_cocotb(case, simulator, tmp_path):
    engine, cfg, params = CASES[case]
    config = AcceleratorConfig(**cfg)
    dut = (MoeGatherEngine if engine == "gather" else MoeCombineEngine)(config, ENGINE_ADDR_BITS)
    p = {"engine": engine, "config": config.to_dict(), "seed": 7, **params}
    run_cocotb(dut, "tb_moe_expert", build_dir=tmp_path, simulator=simulator,
               extra_env={"HWGEN_TB_PARAMS": json.dumps(p)})
