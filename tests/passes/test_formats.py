"""Default fixed-point formats (hwgen/passes/formats.py)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import hwgen
from conftest import make_model
from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.passes.formats import assign_formats


def test_integer_accumulator_cast_to_float_keeps_its_range(save):
    """A dynamically quantized layer (onnxruntime's style): MatMulInteger's int32
    accumulator is cast to float and scaled. The cast's output holds integers far beyond
    the activation format's ±512, so it gets an integer format, and the fixed-point
    result equals the float one (numpy computes the expected value)."""
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (4, 64), dtype=np.int8)
    b = rng.integers(-128, 128, (64, 8), dtype=np.int8)
    scale = np.float32(2.0**-12)
    nodes = [helper.make_node("MatMulInteger", ["a", "b"], ["acc"], name="mmi"),
             helper.make_node("Cast", ["acc"], ["accf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["accf", "s"], ["y"], name="scale")]
    m = make_model(nodes, [("a", TensorProto.INT8, [4, 64])], [("y", TensorProto.FLOAT, [4, 8])],
                   [("b", b), ("s", np.array(scale))])
    g = assign_formats(hwgen.load(save(m)))
    assert g.tensors["accf"].fmt == FixedFormat(32, 32)
    assert g.tensors["y"].fmt == ACT_DEFAULT
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float64) * float(scale)
    assert np.max(np.abs(a.astype(np.int64) @ b.astype(np.int64))) > 512  # the old format would saturate
    got = hwgen.interpret(g, {"a": a}, numerics="fixed")["y"]
    np.testing.assert_array_equal(got, want.astype(np.float32))
