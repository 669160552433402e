"""MOE_GATHER and MOE_COMBINE engines: constructor checks and the cocotb testbenches
(engine behind the top's buffer reader, random stalls) on Verilator and Icarus."""

from __future__ import annotations

import gc
import json

import pytest

from fpga.config import SMALL, AcceleratorConfig
from hwgen.errors import TargetError
from fpga.hdl.engine_moe_expert import MoeCombineEngine, MoeGatherEngine
from fpga.hdl.top import ENGINE_ADDR_BITS
from simulators.engine_harness import EngineHarness
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    # 8 lanes of fixed<32,10> hold 4 experts and 4 weights: top-5 cannot be a route word
    # (the configuration refuses it first; the engine's own check stays for a config built around validate)
    with pytest.raises(TargetError, match=r"moe_k=5 does not fit a MoE route-table word: it holds 4 experts"):
        AcceleratorConfig(**{**SMALL, "moe_experts": 8, "moe_k": 5})
    cfg = AcceleratorConfig(**SMALL)
    object.__setattr__(cfg, "moe_k", 5)  # past validate
    with pytest.raises(ValueError, match="moe_k=5: a route word holds 4 experts and weights at most"):
        MoeGatherEngine(cfg, ENGINE_ADDR_BITS)
    gc.collect()


def _run(tmp_path, simulator, engine_cls, config, testcase, seed):
    params = {"config": config.to_dict(), "seed": seed, "p_rd": 0.7, "p_data": 0.6, "p_wr": 0.6}
    dut = EngineHarness(engine_cls(config, ENGINE_ADDR_BITS), ENGINE_ADDR_BITS, config.mem_port_bits)
    run_cocotb(dut, "tb_moe_expert", build_dir=tmp_path, simulator=simulator, testcase=testcase,
               extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})


@pytest.mark.rtl
@pytest.mark.parametrize("k, preset", [(1, None), (2, None), (2, "int8")])
def test_gather_cocotb(tmp_path, simulator, k, preset):
    """Experts with 0, exactly T and more than T tokens (two GATHERs from the cursor), ties,
    the cursor reaching moe_end, T = 0; the buffer and registers after every instruction.
    int8: schedule and list index fields of two 8-bit lanes."""
    over = {**SMALL, "moe_k": k}
    config = AcceleratorConfig.preset(preset, **over) if preset else AcceleratorConfig(**over)
    _run(tmp_path, simulator, MoeGatherEngine, config, "gather_matches_spec", seed=10 + k)


@pytest.mark.rtl
@pytest.mark.parametrize("preset", [None, "int8"])
def test_combine_cocotb(tmp_path, simulator, preset):
    """Random rows (So = 0..3, 0..8 rows, accumulating into Y) and saturating sums and
    products, bit-exact against hwgen.numerics.moe.combine_codes (int8: the list word's
    weight in lane 2, after the token's two lanes)."""
    config = AcceleratorConfig.preset(preset, **SMALL) if preset else AcceleratorConfig(**SMALL)
    _run(tmp_path, simulator, MoeCombineEngine, config, "combine_matches_reference", seed=3)
