"""The trained models shipped in hwgen/data/models: accuracy via onnxruntime, agreement
with their saved weights, formats, size."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from models.data import load_split  # noqa: E402
from models.evaluate import evaluate_onnx  # noqa: E402
from models.registry import build_model, data_dir, resolve_model  # noqa: E402

pytestmark = pytest.mark.torch

SHIPPED = ["vit-tiny", "m3vit-tiny", "m3vit-tiny-sparse", "convsharevit-tiny", "convsharevit-tiny-valid"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_accuracy_task0(name):
    p = data_dir() / f"{name}.onnx"
    assert p.exists()
    accs = evaluate_onnx(p, runtime="onnxruntime")
    assert accs[0] >= 0.90, accs
    if name.startswith("m3vit"):
        assert len(accs) == 2 and accs[1] >= 0.90, accs  # parity


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_onnx_equals_saved_weights(name):
    """The shipped ONNX computes what the shipped weights compute in torch."""
    p = data_dir() / f"{name}.onnx"
    model = build_model(name)
    x = load_split()[2][:16]
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    multitask = "task" in model.input_names
    for task in ([0, 1] if multitask else [None]):
        feeds = {"image": x} if task is None else {"image": x, "task": np.array(task, dtype=np.int64)}
        got = sess.run(None, feeds)
        with torch.no_grad():
            args = (torch.from_numpy(x),) if task is None else (torch.from_numpy(x), torch.tensor(task))
            want = model(*args)
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def test_shipped_io_names_and_types():
    for name in SHIPPED:
        m = onnx.load(str(data_dir() / f"{name}.onnx"))
        ins = {i.name: i for i in m.graph.input}
        img = ins["image"].type.tensor_type
        assert img.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_value for d in img.shape.dim][1:] == [1, 8, 8]
        outs = [o.name for o in m.graph.output]
        if name.startswith("m3vit"):
            assert ins["task"].type.tensor_type.elem_type == onnx.TensorProto.INT64
            assert outs == ["logits_task0", "logits_task1"]
        else:
            assert set(ins) == {"image"} and outs == ["logits"]


def test_dense_and_sparse_shipped_agree():
    x = load_split()[2]
    d = ort.InferenceSession(str(data_dir() / "m3vit-tiny.onnx"), providers=["CPUExecutionProvider"])
    s = ort.InferenceSession(str(data_dir() / "m3vit-tiny-sparse.onnx"), providers=["CPUExecutionProvider"])
    for task in (0, 1):
        feeds = {"image": x, "task": np.array(task, dtype=np.int64)}
        for a, b in zip(d.run(None, feeds), s.run(None, feeds)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_shipped_size_and_metrics():
    files = [f for f in data_dir().iterdir() if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    assert total < 8e6, total
    for base in ["vit-tiny", "m3vit-tiny", "convsharevit-tiny", "convsharevit-tiny-valid"]:
        m = json.loads((data_dir() / f"{base}.metrics.json").read_text())
        assert m["test_accuracy"]["digit"] >= 0.90
        assert m["train_seconds"] < 300


def test_resolve_model():
    for name in SHIPPED:
        assert resolve_model(name) == data_dir() / f"{name}.onnx"
    assert resolve_model("convsharevit-tiny-same") == data_dir() / "convsharevit-tiny.onnx"
    assert resolve_model("no-such-model") is None
    assert resolve_model("vit-huge.onnx") is None
