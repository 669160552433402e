"""The ONNX frontend: valid models load with static shapes, bad ones give one clear error."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwgen
import hwgen.frontend
from hwgen.errors import HwgenError, ModelError, UnsupportedOpError
from conftest import make_model


def test_load_binds_batch_and_matches_onnxruntime(mlp_model, save):
    path = save(mlp_model)
    g = hwgen.load(path, batch=3)
    assert g.tensors["x"].shape == (3, 4)
    assert g.tensors["h"].shape == (3, 8) and g.tensors["y"].shape == (3, 3)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = hwgen.interpret(g, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_every_tensor_has_a_static_shape(mlp_model, save):
    g = hwgen.load(save(mlp_model))
    g.check()
    for t in g.tensors.values():
        assert all(isinstance(d, int) and d >= 0 for d in t.shape), t


def test_truncated_file(mlp_model, save, tmp_path):
    p = save(mlp_model)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=str(p.name)):
        hwgen.load(p)


def test_not_onnx(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a model\n" * 20)
    with pytest.raises(ModelError):
        hwgen.load(p)


def test_missing_file_lists_bundled(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        hwgen.load(tmp_path / "nope.onnx")


def test_unsupported_op_names_node_and_op(save):
    m = make_model(
        [helper.make_node("Bernoulli", ["x"], ["y"], name="my_coin")],
        [("x", TensorProto.FLOAT, [1, 1, 2])],
        [("y", TensorProto.FLOAT, [1, 1, 2])],
    )
    with pytest.raises(UnsupportedOpError) as e:
        hwgen.load(save(m))
    msg = str(e.value)
    assert "my_coin" in msg and "Bernoulli" in msg and "MatMul" in msg  # lists what is supported


def test_custom_domain_is_unsupported(save):
    n = helper.make_node("FusedThing", ["x"], ["y"], name="f", domain="com.example")
    m = make_model([n], [("x", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [2])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpError, match="com.example.FusedThing"):
        hwgen.load(save(m))


def test_unbound_dynamic_dimension(save):
    m = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        [("x", TensorProto.FLOAT, [1, "seq", 4])],
        [("y", TensorProto.FLOAT, [1, "seq", 4])],
    )
    with pytest.raises(ModelError, match="dimension 1 .'seq'. is dynamic"):
        hwgen.load(save(m))


def test_missing_initializer(save):
    m = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [("x", TensorProto.FLOAT, [1, 4])],
        [("y", TensorProto.FLOAT, [1, 4])],
    )
    with pytest.raises(ModelError, match="node 'mm' .MatMul. reads 'w'.*missing initializer"):
        hwgen.load(save(m))


def test_cycle(save):
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
        helper.make_node("Relu", ["a"], ["b"], name="n2"),
    ]
    m = make_model(nodes, [("x", TensorProto.FLOAT, [2])], [("b", TensorProto.FLOAT, [2])])
    with pytest.raises(ModelError, match="cycle"):
        hwgen.load(save(m))


def test_absurd_input_size(save):
    m = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        [("x", TensorProto.FLOAT, [100000, 100000, 100])],
        [("y", TensorProto.FLOAT, [100000, 100000, 100])],
    )
    with pytest.raises(ModelError, match="absurdly large"):
        hwgen.load(save(m))


def test_absurd_constant_of_shape(save):
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "s")
    m = make_model(
        [helper.make_node("ConstantOfShape", ["s"], ["y"], name="big")],
        [],
        [("y", TensorProto.FLOAT, [1 << 20, 1 << 20])],
        [("s", numpy_helper.to_array(shape))],
    )
    with pytest.raises(hwgen.HwgenError, match="big"):
        hwgen.load(save(m))


def test_external_data_outside_folder_is_refused(mlp_model, tmp_path):
    sub = tmp_path / "model"
    sub.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(32, np.float32).tobytes())
    w = mlp_model.graph.initializer[0]
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "128")):
        e = w.external_data.add()
        e.key, e.value = k, v
    p = sub / "m.onnx"
    onnx.save(mlp_model, str(p))
    with pytest.raises(ModelError, match="path traversal"):
        hwgen.load(p)


def test_external_data_inside_folder_loads(mlp_model, tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(mlp_model, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    assert (tmp_path / "m.data").exists()
    g = hwgen.load(p)
    x = np.ones((1, 4), np.float32)
    want = ort.InferenceSession(str(p)).run(None, {"x": x})[0]
    np.testing.assert_allclose(hwgen.interpret(g, {"x": x})["y"], want, rtol=1e-4, atol=1e-5)


def test_opset_out_of_range(save):
    m = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        [("x", TensorProto.FLOAT, [2])],
        [("y", TensorProto.FLOAT, [2])],
        opset=9,
    )
    with pytest.raises(ModelError, match="opset 9 is not supported"):
        hwgen.load(save(m))


def _shape_ops_model(opset):
    """Reshape, Transpose, Shape, Cast, TopK, Flatten, Unsqueeze, Mod (all re-versioned
    after opset 23) in one model."""
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[1, 0]),
        helper.make_node("TopK", ["t", "k"], ["v", "i"], name="topk", axis=-1),
        helper.make_node("Cast", ["i"], ["ic"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ic", "ax"], ["u"], name="unsqueeze"),
        helper.make_node("Flatten", ["u"], ["f"], name="flatten", axis=1),
        helper.make_node("Shape", ["f"], ["s"], name="shape_of"),
        helper.make_node("Mod", ["v", "two"], ["m"], name="mod", fmod=1),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [2, 6])],
        [("m", TensorProto.FLOAT, [4, 2]), ("f", TensorProto.FLOAT, [4, 2]), ("s", TensorProto.INT64, [2])],
        [("shape", np.array([3, 4], np.int64)), ("k", np.array([2], np.int64)), ("ax", np.array([0], np.int64)),
         ("two", np.float32(2.0))],
        opset=opset,
    )


@pytest.mark.parametrize("opset", [23, 24, 25, hwgen.frontend.MAX_OPSET])
def test_newest_opsets_load_and_match_onnxruntime(opset, save):
    """Opsets up to the installed onnx's newest load (23 was the limit) and run as
    onnxruntime runs them."""
    assert hwgen.frontend.MAX_OPSET == onnx.defs.onnx_opset_version() >= 25
    m = _shape_ops_model(opset)
    m.ir_version = 11
    p = save(m)
    g = hwgen.load(p)
    assert g.opset == opset
    x = np.random.default_rng(2).standard_normal((2, 6)).astype(np.float32)
    want = ort.InferenceSession(str(p)).run(None, {"x": x})
    got = hwgen.interpret(g, {"x": x})
    for name, w in zip(g.outputs, want):
        np.testing.assert_allclose(got[name], w, rtol=1e-6)


def test_opset_newer_than_installed_onnx_is_refused(save):
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [2])])
    m.opset_import[0].version = hwgen.frontend.MAX_OPSET + 1
    p = save(m)
    with pytest.raises(ModelError, match=f"opset {hwgen.frontend.MAX_OPSET + 1} is not supported; hwgen reads opsets 13 to"):
        hwgen.load(p)


def test_op_version_newer_than_implemented_is_refused_by_name(save, monkeypatch):
    """A node whose op, at the model's opset, is newer than the interpreter implements
    (what a future onnx would bring) is refused with the node, op and versions."""
    from hwgen.interp import op_versions

    monkeypatch.setitem(op_versions.OP_VERSIONS, "Reshape", 21)
    p = save(_shape_ops_model(25))
    with pytest.raises(UnsupportedOpError, match=r"node 'reshape': op 'Reshape' at opset 25 is version 25; hwgen implements versions up to 21"):
        hwgen.load(p)
    hwgen.load(save(_shape_ops_model(21), "old.onnx"))  # version 21 itself is fine


@pytest.mark.parametrize("opset,accepted", [(23, False), (28, True)])
def test_mod_fmod0_on_floats_from_opset_28(opset, accepted, save):
    """Mod with fmod=0 on floats is defined from opset 28 on (floor semantics, sign of B)."""
    if opset > hwgen.frontend.MAX_OPSET:
        pytest.skip("the installed onnx predates opset 28")
    m = make_model(
        [helper.make_node("Mod", ["a", "b"], ["y"], name="mod", fmod=0)],
        [("a", TensorProto.FLOAT, [6]), ("b", TensorProto.FLOAT, [6])],
        [("y", TensorProto.FLOAT, [6])],
        opset=opset,
    )
    m.ir_version = 11
    if not accepted:
        # onnx's checker refuses it too; hwgen's message comes first and names the opset
        with pytest.raises(HwgenError, match="opset 28|fmod"):
            hwgen.load(save(m))
        return
    p = save(m)
    g = hwgen.load(p)
    a = np.array([-4.3, 7.2, 5.0, 4.3, -7.2, 8.0], np.float32)
    b = np.array([2.1, -3.4, 8.0, -2.1, 3.4, 5.0], np.float32)
    np.testing.assert_allclose(hwgen.interpret(g, {"a": a, "b": b})["y"], a - np.floor(a / b) * b, rtol=1e-5)
