"""Accelerator top: a program assembled with fpga.isa runs on Verilator, bit-exact."""

from __future__ import annotations

import pytest

from fpga.config import AcceleratorConfig
from fpga.hdl.top import Accelerator
from simulators.runner import run_cocotb


@pytest.mark.rtl
def test_cocotb_verilator_load_gelu_store(tmp_path):
    words = 128  # 1,024 activations at 8 lanes per 256-bit word
    acc = Accelerator(AcceleratorConfig(), buffer_words=2 * words)
    env = {"TB_DATA_BITS": "256", "TB_WORDS": str(words), "TB_SEED": "3"}
    run_cocotb(acc, "tb_top", build_dir=tmp_path, extra_env=env)
