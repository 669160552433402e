"""``hwgen fpga config|verilog|synth`` as a user runs them (hwgen.cli.main)."""

from __future__ import annotations

import json

import pytest

from fpga.config import SMALL, AcceleratorConfig
from hwgen.cli import main


def _toml(path, values: dict):
    path.write_text("[accelerator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def test_config_prints_a_toml_that_round_trips(tmp_path, capsys):
    src = _toml(tmp_path / "small.toml", SMALL)
    assert main(["fpga", "config", str(src)]) == 0
    out = capsys.readouterr().out
    assert "4 activations" not in out and "256 MACs" not in out  # SMALL: 4 x 16 = 64 MACs
    assert "64 MACs/cycle" in out
    again = tmp_path / "again.toml"
    again.write_text(out)
    assert AcceleratorConfig.from_toml(again) == AcceleratorConfig.from_toml(src)


def test_invalid_config_is_one_line_and_exit_2(tmp_path, capsys):
    bad = _toml(tmp_path / "bad.toml", {"mac_rows": 3})
    assert main(["fpga", "config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "attention_queries=4 exceeds mac_rows=3" in err
    assert "Traceback" not in err
    out = tmp_path / "v"
    assert main(["fpga", "verilog", str(bad), "-o", str(out)]) == 2
    assert not out.exists()  # nothing half-written
    assert main(["fpga", "synth", "--ops", "SOFTMAX"]) == 2
    assert "unknown engine 'SOFTMAX'" in capsys.readouterr().err


@pytest.mark.rtl
def test_verilog_writes_one_file_that_lints(tmp_path, capsys):
    src = _toml(tmp_path / "small.toml", SMALL)
    out = tmp_path / "rtl"
    assert main(["fpga", "verilog", str(src), "-o", str(out), "--lint"]) == 0
    text = (out / "accelerator.v").read_text()
    assert text.count("module accelerator(") == 1
    assert (out / "accelerator.vlt").read_text().startswith("`verilator_config")
    assert "clean" in capsys.readouterr().out


@pytest.mark.rtl
@pytest.mark.slow
def test_synth_prints_resources_and_writes_json(tmp_path, capsys):
    src = _toml(tmp_path / "small.toml", SMALL)
    js = tmp_path / "r.json"
    assert main(["fpga", "synth", str(src), "--ops", "GELU", "--buffer-words", "64", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    res = json.loads(js.read_text())
    assert res["resources"]["lut_mapped"] and res["resources"]["lut"] > 0
    # GELU over the word's lanes (256 bits / 32): one interpolation multiply, one DSP or more each
    assert res["resources"]["dsp"] >= SMALL.get("mem_port_bits", 256) // 32 and res["fits"]
    assert f"{res['resources']['lut']:,}" in out and "fits" in out
