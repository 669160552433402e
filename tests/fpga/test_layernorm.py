"""LayerNorm unit: constructor checks and the cocotb testbench on Verilator and Icarus."""

from __future__ import annotations

import gc

import pytest

from fpga.hdl.layernorm import LayerNormUnit
from hwgen.fixedpoint import FixedFormat
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="max_n must be a positive integer, not 0"):
        LayerNormUnit(0)
    with pytest.raises(TypeError, match="g_fmt must be a FixedFormat"):
        LayerNormUnit(8, g_fmt=None)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        LayerNormUnit(8, eps=-1.0)
    gc.collect()


@pytest.mark.rtl
@pytest.mark.parametrize("rows, max_n, fx, fg, fb, fo, eps", [
    (130, 16, (32, 10), (32, 10), (32, 10), (32, 10), 1e-5),   # >= 1,000 elements (random lengths)
    (180, 12, (16, 6), (12, 3), (10, 4), (8, 3), 1e-3),         # narrow output: saturation
], ids=["n16-fixed32", "n12-narrow"])
def test_cocotb(tmp_path, simulator, rows, max_n, fx, fg, fb, fo, eps):
    dut = LayerNormUnit(max_n, FixedFormat(*fx), FixedFormat(*fg), FixedFormat(*fb), FixedFormat(*fo), eps=eps)
    env = {"TB_ROWS": str(rows), "TB_MAXN": str(max_n), "TB_X": "%d,%d" % fx, "TB_G": "%d,%d" % fg,
           "TB_B": "%d,%d" % fb, "TB_OUT": "%d,%d" % fo, "TB_EPS": repr(eps), "TB_SEED": str(max_n)}
    run_cocotb(dut, "tb_layernorm", build_dir=tmp_path, extra_env=env, simulator=simulator)
