"""Hypothesis mutates valid models: the frontend returns a graph or raises HwgenError,
never any other exception."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwgen
from hwgen.errors import HwgenError

OPS = ["Relu", "MatMul", "Add", "Softmax", "Reshape", "Transpose", "Gather", "Conv", "TopK", "Foo", ""]


def _try_load(tmp_path, model_or_bytes):
    p = tmp_path / "m.onnx"
    if isinstance(model_or_bytes, bytes):
        p.write_bytes(model_or_bytes)
    else:
        p.write_bytes(model_or_bytes.SerializeToString())
    try:
        g = hwgen.load(p)
    except HwgenError:
        return None
    g.check()
    return g


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_mutations(mlp_model, tmp_path, data):
    raw = bytearray(mlp_model.SerializeToString())
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 16))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        if not raw:
            raw = bytearray(b"\x00")
    _try_load(tmp_path, bytes(raw))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_structural_mutations(mlp_model, tmp_path, data):
    m = onnx.ModelProto()
    m.CopyFrom(mlp_model)
    nodes = m.graph.node
    for _ in range(data.draw(st.integers(1, 4))):
        n = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        what = data.draw(st.sampled_from(["op", "input", "attr", "dims", "drop_init", "output"]))
        if what == "op":
            n.op_type = data.draw(st.sampled_from(OPS))
        elif what == "input" and n.input:
            n.input[data.draw(st.integers(0, len(n.input) - 1))] = data.draw(st.sampled_from(["x", "y", "h", "r", "w2", "zz", ""]))
        elif what == "attr":
            a = n.attribute.add()
            a.name = data.draw(st.sampled_from(["axis", "transA", "perm", "k", "group"]))
            a.type = onnx.AttributeProto.INT
            a.i = data.draw(st.integers(-5, 5))
        elif what == "dims":
            t = m.graph.initializer[data.draw(st.integers(0, len(m.graph.initializer) - 1))]
            t.dims[0] = data.draw(st.integers(0, 1 << 40))
        elif what == "drop_init" and m.graph.initializer:
            del m.graph.initializer[data.draw(st.integers(0, len(m.graph.initializer) - 1))]
        elif what == "output" and n.output:
            n.output[0] = data.draw(st.sampled_from(["x", "h", "y", "q"]))
    g = _try_load(tmp_path, m)
    if g is not None:  # a valid result must run
        x = np.ones(g.tensors[g.inputs[0]].shape, np.float32) if g.inputs else None
        try:
            hwgen.interpret(g, {g.inputs[0]: x} if g.inputs else {})
        except HwgenError:
            pass


def test_invalid_utf8_name_is_a_clear_error(mlp_model, tmp_path):
    """ONNX is proto2: protobuf returns a corrupted string field as bytes instead of
    refusing the file (found by test_byte_mutations in CI)."""
    raw = mlp_model.SerializeToString()
    assert raw.count(b"relu") == 1
    p = tmp_path / "m.onnx"
    p.write_bytes(raw.replace(b"relu", b"r\x80lu"))
    with pytest.raises(HwgenError, match=r"m\.onnx: corrupted model: model\.graph\.node\[1\]\.name is not valid UTF-8"):
        hwgen.load(p)


def test_every_single_byte_flip(mlp_model, tmp_path):
    """Deterministic companion of the random mutations: flipping the top bit of each
    byte in turn (which turns text into invalid UTF-8, tags into other wire types and
    lengths into overruns) never escapes as anything but HwgenError."""
    raw = mlp_model.SerializeToString()
    loaded = 0
    for pos in range(len(raw)):
        b = bytearray(raw)
        b[pos] ^= 0x80
        loaded += _try_load(tmp_path, bytes(b)) is not None
    assert loaded < len(raw)  # most flips must be refused, not silently accepted
