"""benchmarks/program_speed.py at a small size: Amaranth and program_run agree, bit-exact, same cycles."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "program_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("program_speed", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.rtl
@pytest.mark.slow
def test_program_speed_smoke():
    result = _load().main(["--small", "--repeat", "1", "--skip-cocotb"])
    runs = result["runs"]
    assert set(runs) == {"amaranth", "program_run"}
    assert result["bit_exact"], {k: r["problems"] for k, r in runs.items()}
    assert result["same_cycles"], {k: r["run_cycles"] for k, r in runs.items()}
    assert runs["program_run"]["cycles"] > 0 and runs["amaranth"]["wall_s"] > 0
