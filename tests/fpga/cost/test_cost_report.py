"""The report's Resources and Clock section, and ``hwgen fpga synth --report`` errors."""

from __future__ import annotations

import pytest

from fpga.config import AcceleratorConfig
from fpga.cost.report_section import recorded_fmax, resources_and_clock
from hwgen.cli import main


def test_yosys_figures_overflow_and_slow_clock_go_into_the_report():
    config = AcceleratorConfig()
    synth = {"resources": {"lut": 300_000, "ff": 1_000, "dsp": 10, "bram36": 5.0},
             "critical_path": {"delay_ns": 10.0, "levels": 12, "fmax_mhz": 100.0, "cells": {"LUT6": 12}},
             "yosys": "Yosys 0.70", "synth_s": 1.0}
    warnings = []
    out = resources_and_clock(config, 1_000_000, synth, warnings)
    r = out["resources"]
    assert r["lut_yosys"] == 300_000 and r["lut_available"] == 274_080 and r["lut_estimated"] > 0
    assert all(isinstance(v, (int, float)) for v in r.values())  # the report schema's shape
    assert out["resources_detail"]["overflow"] == {"lut": {"needed": 300_000, "available": 274_080}}
    assert not out["resources_detail"]["fits"]
    assert any("does not fit" in w and "lut 300,000 of 274,080" in w for w in warnings)
    clock = out["clock"]
    assert clock["fmax_estimated_hz"] == pytest.approx(100e6) and clock["clock_used_hz"] == pytest.approx(100e6)
    assert out["latency_at_clock_used_s"] == pytest.approx(1_000_000 / 100e6)
    assert any("below the target clock 300 MHz" in w for w in warnings)


def test_without_synthesis_the_estimate_and_recorded_paths_are_used():
    config = AcceleratorConfig(clock_hz=1e6)  # a clock any recorded path meets
    warnings = []
    out = resources_and_clock(config, 5_000, None, warnings)
    assert out["resources_detail"]["figures_from"] == "estimate" and "lut_yosys" not in out["resources"]
    assert out["clock"]["meets_target"] and out["clock"]["clock_used_hz"] == 1e6 and not warnings
    fmax, source = recorded_fmax(config)
    assert fmax is not None and "recorded Yosys run" in source


def test_synth_report_option_errors_are_one_line(tmp_path, capsys):
    assert main(["fpga", "synth", "--report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a folder written by `hwgen compile" in err and "Traceback" not in err
    assert main(["fpga", "synth", "--report", str(tmp_path), "--ops", "GELU"]) == 2
    assert "leave out --buffer-words and --ops" in capsys.readouterr().err
