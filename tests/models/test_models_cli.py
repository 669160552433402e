"""`hwgen models ...` through click's CliRunner; training reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from click.testing import CliRunner  # noqa: E402

from models.cli import models  # noqa: E402

pytestmark = pytest.mark.torch


def _run(*args):
    r = CliRunner().invoke(models, list(args), catch_exceptions=False)
    return r


def test_list():
    r = _run("list")
    assert r.exit_code == 0, r.output
    for name in ["vit-tiny", "m3vit-tiny", "m3vit-tiny-sparse", "convsharevit-tiny", "convsharevit-tiny-valid", "m3vit-edge-moe"]:
        assert name in r.output


@pytest.mark.parametrize("args", [[], ["--moe", "sparse"], ["--opset", "20", "--exporter", "torchscript"]])
def test_export(tmp_path, args):
    out = tmp_path / "m.onnx"
    r = _run("export", "m3vit-tiny", "-o", str(out), *args)
    assert r.exit_code == 0, r.output
    m = onnx.load(str(out))
    ops = {n.op_type for n in m.graph.node}
    assert ("NonZero" in ops) == ("sparse" in args)
    if "--opset" in args:
        assert {o.domain or "ai.onnx": o.version for o in m.opset_import}["ai.onnx"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_export_errors(tmp_path):
    r = CliRunner().invoke(models, ["export", "nope", "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "unknown model" in r.output
    r = CliRunner().invoke(models, ["export", "vit-tiny", "--moe", "sparse", "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "no MoE" in r.output
    r = CliRunner().invoke(models, ["train", "m3vit-edge-moe"])
    assert r.exit_code == 2 and "random weights" in r.output


def test_eval_onnxruntime():
    r = _run("eval", "vit-tiny", "--runtime", "onnxruntime")
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("accuracy: 0.") and float(last.split()[1]) >= 0.90


def test_eval_multitask_onnxruntime():
    r = _run("eval", "m3vit-tiny-sparse", "--runtime", "onnxruntime")
    assert r.exit_code == 0, r.output
    assert "task 1 (parity)" in r.output
    assert r.output.strip().splitlines()[-1].startswith("accuracy: ")


@pytest.mark.parametrize("name", ["m3vit-tiny", "convsharevit-tiny"])
def test_train_is_reproducible(tmp_path, name):
    outs = []
    for k in range(2):
        d = tmp_path / f"run{k}"
        r = _run("train", name, "--epochs", "1", "--out", str(d))
        assert r.exit_code == 0, r.output
        assert "test accuracy (digit)" in r.output
        outs.append(d)
    a, b = (np.load(d / f"{name}.weights.npz") for d in outs)
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    ma, mb = (json.loads((d / f"{name}.metrics.json").read_text()) for d in outs)
    assert ma["test_accuracy"] == mb["test_accuracy"]
    onnx_files = sorted(p.name for p in outs[0].glob("*.onnx"))
    assert onnx_files == sorted([f"{name}.onnx", f"{name}-sparse.onnx"] if name == "m3vit-tiny" else [f"{name}.onnx"])
