"""The optical4f target end to end: `hwgen compile convsharevit-tiny --target optical4f`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import hwgen
from hwgen.cli import cli
from hwgen.errors import TargetError
from hwgen.report import validate_report
from optical4f.target import Optical4fTarget, measure_onnxruntime

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("o4f") / "OUT"
    res = CliRunner().invoke(cli, ["compile", "convsharevit-tiny", "--target", "optical4f", "-o", str(out),
                                   "--set", "accuracy=false", "--set", "ort_seconds=0.05"])
    assert res.exit_code == 0, res.output
    return out


def test_writes_report_and_images(compiled):
    for f in ("report.json", "report.md", "input_plane.png", "fourier_plane.png", "camera_frame.png", "timeline.png"):
        assert (compiled / f).stat().st_size > 0, f
    report = json.loads((compiled / "report.json").read_text())
    validate_report(report)
    assert report["target"] == "optical4f" and report["model"] == "convsharevit-tiny"
    assert "| node_conv2d_1 | Conv |" in (compiled / "report.md").read_text()


def test_report_contents(compiled):
    r = json.loads((compiled / "report.json").read_text())
    convs = [l for l in r["layers"] if l["op"] == "Conv"]
    # map=auto: the patch embedding (4 -> 64 channels, 2x2 stride 2) is a reshape + matmul: electronics
    assert len(convs) == 8 and all(l["frames"] >= 1 for l in convs)
    (embed,) = [h for h in r["host_ops"] if h["op"] == "Conv"]
    assert embed["kind"] == "patchify" and "electronics is faster" in embed["mapping_reason"]
    assert len(r["mapping"]) == 9 and all(m["reason"] for m in r["mapping"])
    assert sum(l["frames"] for l in convs) == r["frames"]
    assert any(l["shared_kernels"] for l in convs)  # ConvShareViT's shared depthwise convs
    ops = {h["op"] for h in r["host_ops"]}
    assert ops >= {"LayerNormalization", "ReduceSum", "Gemm"} and ("Attention" in ops or "Softmax" in ops)
    assert all(h["flops"] > 0 for h in r["host_ops"] if h["op"] in ("Attention", "MatMul", "LayerNormalization"))
    # layers' latency_s are serial; their sum is the serial bound, the pipelined latency is below it
    serial = sum(l["latency_s"] for l in r["layers"]) + sum(h["latency_s"] for h in r["host_ops"])
    assert r["latency_serial_s"] == pytest.approx(serial)
    assert r["latency_model"] == "pipelined" and r["latency_s"] == r["latency_pipelined_s"] < serial
    assert r["energy_j"] == pytest.approx(sum(r["energy_breakdown_j"].values()))
    # realistic preset: the error against digital is reported, not hidden
    errs = [l["rel_error_vs_digital"] for l in convs]
    assert all(0 < e < 0.2 for e in errs)
    ort = next(c for c in r["comparisons"] if c["name"].startswith("onnxruntime"))
    assert ort["latency_s"] > 0 and ort["speedup"] == pytest.approx(ort["latency_s"] / r["latency_s"])
    gpu = next(c for c in r["comparisons"] if "A100" in c["name"])
    assert gpu["latency_s"] > 0
    names = {a["name"] for a in r["assumptions"]}
    assert {"camera.read_noise_e", "laser.wall_plug_efficiency", "gpu.fp32_flops_per_s"} <= names
    assert all(a["source"] for a in r["assumptions"])


def test_onnxruntime_missing_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    r = measure_onnxruntime("whatever.onnx", {})
    assert r["latency_s"] is None and "not installed" in r["note"]


def test_bad_option_is_a_target_error(tmp_path):
    g = hwgen.load("convsharevit-tiny")
    with pytest.raises(TargetError, match="camera.bogus"):
        Optical4fTarget().compile(g, tmp_path, {"overrides": {"camera.bogus": "1"}})
    with pytest.raises(TargetError, match="unknown optical4f preset"):
        Optical4fTarget().compile(g, tmp_path, {"overrides": {"preset": "nope"}})
    assert not (tmp_path / "report.json").exists()


def test_graph_without_conv_is_rejected(tmp_path):
    g = hwgen.Graph("noconv")
    g.add_tensor(hwgen.Tensor("x", (1, 4), np.dtype(np.float32)))
    g.add_tensor(hwgen.Tensor("y", (1, 4), np.dtype(np.float32)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.nodes = [hwgen.Node("Relu", "r", ["x"], ["y"])]
    with pytest.raises(TargetError, match="no Conv node"):
        Optical4fTarget().compile(g, tmp_path, {})
