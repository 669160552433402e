"""Controller: constructor check and the cocotb testbench on Verilator and Icarus."""

from __future__ import annotations

import pytest

from fpga.hdl.controller import Controller
from simulators.runner import run_cocotb


def test_constructor_checks():
    with pytest.raises(TypeError, match="buf_addr_bits must be a positive integer, not 0"):
        Controller(0)


@pytest.mark.rtl
def test_cocotb_random_program(tmp_path, simulator):
    env = {"TB_N": "1000", "TB_ABITS": "10", "TB_SEED": "11"}  # >= 1,000 random instructions
    run_cocotb(Controller(10), "tb_controller", build_dir=tmp_path, extra_env=env, simulator=simulator)
