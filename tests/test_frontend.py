"""The ONNX frontend: valid models load with static shapes, bad ones give one clear error."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwgen
from hwgen.errors import ModelError, UnsupportedOpError
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
        [helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="my_lstm", hidden_size=2)],
        [("x", TensorProto.FLOAT, [1, 1, 2])],
        [("y", TensorProto.FLOAT, [1, 1, 1, 2])],
        [("w", np.zeros((1, 8, 2), np.float32)), ("r", np.zeros((1, 8, 2), np.float32))],
    )
    with pytest.raises(UnsupportedOpError) as e:
        hwgen.load(save(m))
    msg = str(e.value)
    assert "my_lstm" in msg and "LSTM" in msg and "MatMul" in msg  # lists what is supported


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
