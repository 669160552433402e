"""``hwgen compile MODEL --target fpga``: the files, the report, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fpga.isa import assemble, encode
from hwgen.report import validate_report

CMD = [sys.executable, "-m", "hwgen.cli"]


def _run(*args, cwd=None):
    return subprocess.run(CMD + list(args), capture_output=True, text=True, cwd=cwd)


def test_compile_writes_every_file(tmp_path):
    out = tmp_path / "m3"
    r = _run("compile", "m3vit-tiny", "--target", "fpga", "-o", str(out), "--set", "verilog=false")
    assert r.returncode == 0, r.stderr
    for name in ("program.bin", "program.asm", "image.bin", "layout.json", "compiled.pkl", "config.toml",
                 "report.json", "report.md", "layers.png", "roofline.png"):
        assert (out / name).is_file(), name
    assert not (out / "accelerator.v").exists()  # verilog=false
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    assert report["target"] == "fpga" and report["cycles"] > 0 and report["host_ops"] == []
    assert [p["name"] for p in report["programs"]] == ["task0", "task1"]  # one program set per task
    ops = {layer["op"] for layer in report["layers"]}
    assert {"hwgen.MoE", "hwgen.Attention", "hwgen.Linear", "LayerNormalization", "Add", "Conv"} <= ops
    # the cycle model without an input: uniform MoE rows, said so; no RTL figures yet
    assert report["cycle_model"]["moe_rows"].startswith("uniform") and "total_rtl" not in report["cycle_model"]
    assert sum(la["cycles_model"] for la in report["layers"]) == pytest.approx(report["cycles"], abs=len(report["layers"]))
    assert "## Latency: cycle model and RTL" in (out / "report.md").read_text()
    # program.asm is readable and assembles back to program.bin
    words = [encode(i) for i in assemble((out / "program.asm").read_text())]
    assert b"".join(w.to_bytes(16, "little") for w in words) == (out / "program.bin").read_bytes()
    layout = json.loads((out / "layout.json").read_text())
    assert {p["name"] for p in layout["programs"]} == {"task0", "task1"}
    assert "image" in layout["programs"][0]["inputs"]
    image = (out / "image.bin").read_bytes()
    for p in layout["programs"]:
        for seg in p["segments"]:
            if seg["kind"] == "program":  # each program lies in the image at its address
                start = seg["addr"]
                assert image[start:start + 16 * seg["instructions"]] in (out / "program.bin").read_bytes()


def test_task_option_compiles_one_program_set(tmp_path):
    r = _run("compile", "m3vit-tiny", "--target", "fpga", "-o", str(tmp_path / "t1"), "--set", "verilog=false",
             "--task", "1")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "t1" / "report.json").read_text())
    assert [p["name"] for p in report["programs"]] == ["task1"]


@pytest.mark.parametrize("args, message", [
    (["--set", "mac_rows=0"], "mac_rows must be a positive integer"),
    (["--set", "no_such_key=1"], "not a configuration field"),
    (["--set", "moe_k=3"], "compile with --set moe_k=2"),  # the model's MoE picks 2 experts
    (["--task", "5"], None),
])
def test_bad_options_are_one_line_and_leave_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    r = _run("compile", "m3vit-tiny", "--target", "fpga", "-o", str(out), "--set", "verilog=false", *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    if message:
        assert message in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_model_with_verilog_running_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    out = tmp_path / "out"
    r = _run("compile", str(bad), "--target", "fpga", "-o", str(out))
    assert r.returncode == 2 and "not a readable ONNX model" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]
