"""DMA: constructor checks and the cocotb testbench on Verilator and Icarus."""

from __future__ import annotations

import pytest

from fpga.hdl.dma import Dma
from simulators.runner import run_cocotb


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="depth must be a positive integer, not 0"):
        Dma(depth=0)
    with pytest.raises(ValueError, match="data_bits must be a multiple of 8, not 12"):
        Dma(data_bits=12)
    with pytest.raises(ValueError, match="burst_beats must be below 256, not 256"):
        Dma(burst_beats=256)


@pytest.mark.rtl
@pytest.mark.parametrize("data_bits, depth, burst", [(256, 64, 16), (64, 37, 5)])
def test_cocotb(tmp_path, simulator, data_bits, depth, burst):
    env = {"TB_DATA_BITS": str(data_bits), "TB_DEPTH": str(depth), "TB_BURST": str(burst),
           "TB_N": "40", "TB_SEED": str(depth)}
    run_cocotb(Dma(data_bits, depth, burst), "tb_dma", build_dir=tmp_path, extra_env=env, simulator=simulator)
