"""Linear unit: constructor checks and the cocotb testbench on Verilator and Icarus."""

from __future__ import annotations

import gc

import pytest

from fpga.hdl.linear import LinearUnit
from hwgen.fixedpoint import FixedFormat
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="rows must be a positive integer, not 0"):
        LinearUnit(rows=0)
    with pytest.raises(TypeError, match="w_fmt must be a FixedFormat"):
        LinearUnit(w_fmt="fixed<16,2>")
    with pytest.raises(ValueError, match="need more than 63 bits"):
        LinearUnit(x_fmt=FixedFormat(40, 10), w_fmt=FixedFormat(24, 2), max_k=1024)
    gc.collect()


@pytest.mark.rtl
@pytest.mark.parametrize("rows, cols, depth, max_k, fx, fw, fb, fo, gelu, jobs", [
    # Edge-MoE formats; K up to 10 in tiles of 4 (accumulation over K tiles); 4x4 array
    (4, 4, 4, 10, (32, 10), (16, 2), (32, 10), (32, 10), False, 260),
    # narrow output: saturation; fused GELU
    (3, 2, 3, 7, (16, 6), (8, 2), (12, 4), (12, 5), True, 340),
], ids=["4x4-fixed32", "3x2-narrow-gelu"])
def test_cocotb(tmp_path, simulator, rows, cols, depth, max_k, fx, fw, fb, fo, gelu, jobs):
    """>= 1,000 output rows per configuration, bit-exact vs hwgen.numerics.linear."""
    assert jobs * rows >= 1000
    dut = LinearUnit(rows, cols, depth, max_k, FixedFormat(*fx), FixedFormat(*fw), FixedFormat(*fb),
                     FixedFormat(*fo), gelu=gelu)
    env = {"TB_JOBS": str(jobs), "TB_ROWS": str(rows), "TB_COLS": str(cols), "TB_DEPTH": str(depth),
           "TB_MAXK": str(max_k), "TB_X": "%d,%d" % fx, "TB_W": "%d,%d" % fw, "TB_B": "%d,%d" % fb,
           "TB_OUT": "%d,%d" % fo, "TB_GELU": str(int(gelu)), "TB_SEED": str(rows)}
    run_cocotb(dut, "tb_linear", build_dir=tmp_path, extra_env=env, simulator=simulator)
