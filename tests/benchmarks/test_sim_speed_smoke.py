"""benchmarks/sim_speed.py at a tiny size: both simulators bit-exact, same cycle counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sim_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("sim_speed", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.rtl
@pytest.mark.slow
def test_sim_speed_smoke(tmp_path):
    result = _load().main(["--words", "2", "--repeat", "2", "--buffer-words", "8", "--no-bfm",
                           "--build-dir", str(tmp_path)])
    runs = result["runs"]
    assert set(runs) == {"verilator", "amaranth"}
    assert result["bit_exact"], {k: r["problems"] for k, r in runs.items()}
    assert result["same_cycles"], {k: (r["cycles"], r["run_cycles"]) for k, r in runs.items()}
    assert runs["verilator"]["cycles"] > 0 and runs["amaranth"]["wall_s"] > 0
