"""Residual add unit: constructor checks and the cocotb testbench on Verilator and Icarus."""

from __future__ import annotations

import gc

import pytest

from fpga.hdl.residual import ResidualAdd
from hwgen.fixedpoint import FixedFormat
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="lanes must be a positive integer, not 0"):
        ResidualAdd(0)
    with pytest.raises(TypeError, match="out_fmt must be a FixedFormat"):
        ResidualAdd(1, out_fmt="fixed<8,2>")
    gc.collect()


@pytest.mark.rtl
@pytest.mark.parametrize("lanes, a, b, out", [
    (4, (32, 10), (32, 10), (32, 10)),
    (2, (16, 4), (12, 6), (10, 5)),  # mixed alignment, rounding and saturation
], ids=["4lanes-fixed32", "2lanes-mixed-formats"])
def test_cocotb(tmp_path, simulator, lanes, a, b, out):
    fa, fb, fo = FixedFormat(*a), FixedFormat(*b), FixedFormat(*out)
    env = {"TB_N": "1000", "TB_LANES": str(lanes), "TB_A": "%d,%d" % a, "TB_B": "%d,%d" % b,
           "TB_OUT": "%d,%d" % out, "TB_SEED": str(lanes)}
    run_cocotb(ResidualAdd(lanes, fa, fb, fo), "tb_residual", build_dir=tmp_path, extra_env=env, simulator=simulator)
