"""fpga.generate_verilog: one Verilog file that passes verilator --lint-only -Wall."""

from __future__ import annotations

import re
import subprocess

import pytest

from fpga import LINT_WAIVERS, generate_verilog
from fpga.config import AcceleratorConfig
from simulators.runner import setup_path


@pytest.mark.rtl
def test_default_top_lints_clean(tmp_path):
    path = generate_verilog(AcceleratorConfig(), tmp_path)
    assert path == tmp_path / "accelerator.v"
    assert path.read_text().count("module accelerator(") == 1
    setup_path()
    # without waivers: only the documented, Amaranth-generated rules fire
    raw = subprocess.run(["verilator", "--lint-only", "-Wall", str(path)], capture_output=True, text=True)
    rules = set(re.findall(r"%Warning-(\w+)", raw.stderr))
    assert rules <= set(LINT_WAIVERS), f"undocumented warnings: {rules - set(LINT_WAIVERS)}"
    assert "%Error:" not in raw.stderr.replace("%Error: Exiting due to", "")
    # with the .vlt written beside it: clean
    vlt = tmp_path / "accelerator.vlt"
    run = subprocess.run(["verilator", "--lint-only", "-Wall", str(vlt), str(path)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.strip() == ""
