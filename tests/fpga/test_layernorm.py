"""LayerNorm unit and LAYERNORM engine: constructor checks and the cocotb testbenches on
Verilator and Icarus."""

from __future__ import annotations

import gc
import json

import pytest

from fpga.hdl.engine_layernorm import LayerNormEngine
from fpga.hdl.layernorm import LayerNormUnit
from fpga.hdl.top import ENGINE_ADDR_BITS
from hwgen.fixedpoint import FixedFormat
from simulators.engine_harness import EngineHarness
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="max_n must be a positive integer, not 0"):
        LayerNormUnit(0)
    with pytest.raises(TypeError, match="g_fmt must be a FixedFormat"):
        LayerNormUnit(8, g_fmt=None)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        LayerNormUnit(8, eps=-1.0)
    with pytest.raises(ValueError, match="lanes must be a power of two, not 3"):
        LayerNormUnit(8, lanes=3)
    with pytest.raises(ValueError, match="rsqrt_steps must be 1, 2, 3 or 4, not 5"):
        LayerNormUnit(8, rsqrt_steps=5)
    gc.collect()


@pytest.mark.rtl
@pytest.mark.parametrize("rows, max_n, lanes, steps, fx, fg, fb, fo, eps", [
    # narrow output (saturation), beta and output formats differ, 3 rsqrt bits a cycle
    (180, 12, 2, 3, (16, 6), (12, 3), (10, 4), (8, 3), 1e-3),
], ids=["n12-lanes2-narrow"])
def test_cocotb(tmp_path, simulator, rows, max_n, lanes, steps, fx, fg, fb, fo, eps):
    dut = LayerNormUnit(max_n, FixedFormat(*fx), FixedFormat(*fg), FixedFormat(*fb), FixedFormat(*fo), eps=eps,
                        lanes=lanes, rsqrt_steps=steps)
    env = {"TB_ROWS": str(rows), "TB_MAXN": str(max_n), "TB_LANES": str(lanes), "TB_X": "%d,%d" % fx,
           "TB_G": "%d,%d" % fg, "TB_B": "%d,%d" % fb, "TB_OUT": "%d,%d" % fo, "TB_EPS": repr(eps),
           "TB_SEED": str(max_n)}
    run_cocotb(dut, "tb_layernorm", build_dir=tmp_path, extra_env=env, simulator=simulator)


@pytest.mark.rtl
def test_engine_cocotb(tmp_path, simulator):
    """LAYERNORM engine behind the top's buffer reader: exact cycles (layernorm_cycles) without
    stalls, rows shorter and longer than the square root, partial words, row stride, no rows;
    bit-exact whole buffer with random stalls."""
    lanes, max_n, fmt = 2, 100, FixedFormat(32, 10)
    params = {"lanes": lanes, "max_n": max_n, "width": 32, "int_bits": 10, "seed": 5,
              "p_rd": 0.7, "p_data": 0.6, "p_wr": 0.6}
    dut = EngineHarness(LayerNormEngine(max_n, fmt, lanes, ENGINE_ADDR_BITS), ENGINE_ADDR_BITS, lanes * fmt.width)
    run_cocotb(dut, "tb_layernorm_engine", build_dir=tmp_path, simulator=simulator,
               extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})
