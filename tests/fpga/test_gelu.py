"""GELU unit: constructor checks and the cocotb testbench on Verilator and Icarus."""

from __future__ import annotations

import gc

import pytest

from fpga.hdl.gelu import GeluUnit
from hwgen.fixedpoint import FixedFormat
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="lanes must be a positive integer, not 0"):
        GeluUnit(0)
    with pytest.raises(TypeError, match="in_fmt must be a FixedFormat"):
        GeluUnit(1, in_fmt=(32, 10))
    with pytest.raises(ValueError, match="at most 40 are supported"):
        GeluUnit(1, in_fmt=FixedFormat(48, 2))
    gc.collect()


@pytest.mark.rtl
@pytest.mark.parametrize("lanes, fin, fout", [
    (4, (32, 10), (32, 10)),   # Edge-MoE's activation format
    (2, (16, 6), (8, 3)),      # narrow output: rounding and saturation
    (1, (8, 6), (8, 6)),       # 2 fraction bits: index only, no interpolation bits
], ids=["4lanes-fixed32", "2lanes-narrow-out", "1lane-8bit"])
def test_cocotb(tmp_path, simulator, lanes, fin, fout):
    env = {"TB_N": "1000", "TB_LANES": str(lanes), "TB_IN": "%d,%d" % fin, "TB_OUT": "%d,%d" % fout,
           "TB_SEED": str(lanes)}
    run_cocotb(GeluUnit(lanes, FixedFormat(*fin), FixedFormat(*fout)), "tb_gelu", build_dir=tmp_path, extra_env=env, simulator=simulator)
