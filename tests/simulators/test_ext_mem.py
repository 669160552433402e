"""simulators/hdl/hwgen_ext_mem.v alone: pipelined bursts at the specified latency and rate, errors."""

from __future__ import annotations

import pytest

from simulators.program_run import HDL_DIR
from simulators.runner import run_cocotb

WORDS = 4096


@pytest.mark.rtl
def test_ext_mem_timing_data_and_errors(tmp_path):
    source = (HDL_DIR / "hwgen_mem_read_channel.v").read_text() + (HDL_DIR / "hwgen_ext_mem.v").read_text()
    assert "parameter WORDS = 2097152" in source
    path = tmp_path / "ext_mem.v"  # one file (run_cocotb takes one), a small memory
    path.write_text(source.replace("parameter WORDS = 2097152", f"parameter WORDS = {WORDS}"))
    env = {"TB_SETTINGS": "1,1;4,1;5,3;2,2", "TB_WORDS": str(WORDS), "TB_SEED": "7"}
    run_cocotb(path, "tb_ext_mem", build_dir=tmp_path, toplevel="hwgen_ext_mem", extra_env=env)
