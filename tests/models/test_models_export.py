"""Exported ONNX (both torch exporters, opsets 17 and 20) equals the torch model,
checked with onnxruntime."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from models.export import export_onnx  # noqa: E402
from models.registry import build_model  # noqa: E402

pytestmark = pytest.mark.torch

CASES = [
    ("vit-tiny", None),
    ("convsharevit-tiny", None),
    ("convsharevit-tiny-valid", None),
    ("m3vit-tiny", "dense"),
    ("m3vit-tiny", "sparse"),
]


def _images(n=5):
    from models.data import load_split

    return load_split()[2][:n]


def _torch_out(model, x, task):
    with torch.no_grad():
        args = (torch.from_numpy(x),) if task is None else (torch.from_numpy(x), torch.tensor(task))
        out = model(*args)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


EXPORTS = [(17, True), (20, True), (23, True), (17, False), (20, False)]  # TorchScript stops at opset 20


@pytest.mark.parametrize("opset,dynamo", EXPORTS, ids=[f"opset{o}-{'dynamo' if d else 'torchscript'}" for o, d in EXPORTS])
@pytest.mark.parametrize("name,moe", CASES, ids=[f"{n}-{m}" if m else n for n, m in CASES])
def test_export_matches_torch(tmp_path, name, moe, opset, dynamo):
    model = build_model(name, moe=moe)
    p = export_onnx(model, tmp_path / "m.onnx", opset=opset, dynamo=dynamo)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.onnx"]  # one self-contained file
    m = onnx.load(str(p))
    versions = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    assert versions["ai.onnx"] == opset
    inputs = [i.name for i in m.graph.input]
    assert inputs[0] == "image"
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    x = _images(5)
    tasks = [0, 1] if "task" in inputs else [None]
    for task in tasks:
        feeds = {"image": x} if task is None else {"image": x, "task": np.array(task, dtype=np.int64)}
        got = sess.run(None, feeds)
        want = _torch_out(model, x, task)
        assert [o.name for o in m.graph.output] == list(model.output_names)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def _hist(p):
    return Counter(n.op_type for n in onnx.load(str(p)).graph.node)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_moe_formulations_export_their_patterns(tmp_path, dynamo):
    model = build_model("m3vit-tiny")
    dense = _hist(export_onnx(model.set_moe_mode("dense"), tmp_path / "d.onnx", dynamo=dynamo))
    sparse = _hist(export_onnx(model.set_moe_mode("sparse"), tmp_path / "s.onnx", dynamo=dynamo))
    n_moe = len(model.moe_layers())
    assert dense["TopK"] == n_moe and dense["Equal"] >= n_moe and dense["NonZero"] == 0
    assert sparse["TopK"] == n_moe and sparse["NonZero"] == n_moe * model.moe_layers()[0].experts
    assert sparse["ScatterND"] + sparse["ScatterElements"] == sparse["NonZero"]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_task_selects_gate_in_onnx(tmp_path, dynamo):
    """The task input reaches each gate through a Gather on the stacked [T, D, E] gate."""
    model = build_model("m3vit-tiny")
    m = onnx.load(str(export_onnx(model, tmp_path / "m.onnx", dynamo=dynamo)))
    dims = {i.name: list(i.dims) for i in m.graph.initializer}
    from_task = {"task"}
    for n in m.graph.node:  # nodes are topologically sorted
        if any(i in from_task for i in n.input):
            from_task.update(n.output)
    gate_gathers = [
        n for n in m.graph.node
        if n.op_type == "Gather" and dims.get(n.input[0]) == [2, 48, 4] and n.input[1] in from_task
    ]
    assert len(gate_gathers) == len(model.moe_layers()) == 2
