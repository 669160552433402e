"""The FPGA compiler on whole models, checked on the instruction-set simulator.

Every tensor the accelerator stores is compared, element by element, with
``hwgen.interpret(hardware_graph, numerics="fixed")`` (the reference the RTL is proven
against); the model outputs too. No Verilog here: tests/fpga/compile/test_simulate.py
runs compiled models on the RTL.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import hwgen
from fpga.compile import compile_graph
from fpga.compile.runtime import run_isa
from fpga.config import SMALL, AcceleratorConfig
from hwgen.frontend import sample_inputs

CONFIGS = {"default": AcceleratorConfig(), "small": AcceleratorConfig(**SMALL)}


def _check(g, cfg, feeds=None, binding=None):
    c = compile_graph(g, cfg)
    b = c.binding(binding)
    feeds = dict(feeds or sample_inputs(g, seed=1))
    for k, v in b.bind.items():
        feeds[k] = np.array(v)
    outs, rt = run_isa(c, feeds, b.name)
    bad = [str(r.first) for r in rt.layers.values() if not r.bit_exact]
    assert not bad, bad[:3]
    assert rt.layers, "no layer was checked"
    incomplete = [r.tensor for r in rt.layers.values() if r.elements != r.checked.size]
    assert not incomplete, incomplete
    for name in b.graph.outputs:
        np.testing.assert_array_equal(outs[name], rt.ref[name])
    return c, b, rt


@pytest.mark.parametrize("cfg", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("model", ["vit-tiny", "convsharevit-tiny"])
def test_bundled_models_bit_exact(model, cfg):
    g = hwgen.canonicalize(hwgen.load(model))
    c, b, rt = _check(g, CONFIGS[cfg])
    if model == "vit-tiny":
        assert not b.host_reasons, b.host_reasons  # everything on the accelerator
        assert b.stats["programs"] == 1
        checked = set(rt.layers)
        for n in b.graph.nodes:  # every compute node's result was compared
            if n.op in ("Linear", "LayerNormalization", "Attention", "Add"):
                assert n.outputs[0] in checked or n.outputs[0] in b.skipped_checks, n.name
    else:  # depthwise/padded convolutions and the ReduceSum run on the host, named with a reason
        assert any("convolution" in r for r in b.host_reasons.values())
        assert b.stats["host_steps"] == len(b.host_reasons)


@pytest.mark.parametrize("model", ["vit-tiny", "m3vit-tiny"])
def test_int8_preset_bit_exact(model):
    """The int8 preset (fixed<8,8>: 16 activations a 128-bit word, MoE index fields of two
    lanes) on SMALL's array; every program set of the model (m3vit-tiny: both tasks)."""
    g = hwgen.canonicalize(hwgen.load(model))
    cfg = AcceleratorConfig.preset("int8", **SMALL)
    assert cfg.lanes == 16
    for name in [b.name for b in compile_graph(g, cfg).bindings]:
        c, b, rt = _check(g, cfg, binding=name)
        assert not b.host_reasons, b.host_reasons


def test_batch_of_three_on_the_accelerator():
    g = hwgen.canonicalize(hwgen.load("vit-tiny", batch=3))
    c, b, rt = _check(g, CONFIGS["small"], sample_inputs(g, seed=5))
    assert not b.host_reasons, b.host_reasons


def test_small_buffer_spills_and_stays_exact():
    g = hwgen.canonicalize(hwgen.load("vit-tiny"))
    cfg = AcceleratorConfig(act_buffer_bytes=600 * 32)  # 600 words: the residual stream does not stay
    c, b, rt = _check(g, cfg)
    assert b.stats["spilled"], "expected spills with a 600-word buffer"
    assert b.stats["peak_buffer_words"] <= 600


def test_too_small_buffer_is_a_clear_error():
    g = hwgen.canonicalize(hwgen.load("vit-tiny"))
    with pytest.raises(hwgen.TargetError, match="buffer words at once"):
        compile_graph(g, AcceleratorConfig(act_buffer_bytes=200 * 32))


def _relu_mlp(tmp_path):
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((24, 40)) * 0.3).astype(np.float32)
    b1 = rng.standard_normal(40).astype(np.float32)
    w2 = (rng.standard_normal((40, 20)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y0"]),
             helper.make_node("Softmax", ["y0"], ["y"], axis=-1)]
    g = helper.make_graph(nodes, "relu_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 24])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5, 20])],
                          [onnx.numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "relu_mlp.onnx"
    onnx.save(m, str(p))
    return p


@pytest.mark.parametrize("cfg", CONFIGS, ids=list(CONFIGS))
def test_host_steps_between_programs(cfg, tmp_path):
    g = hwgen.canonicalize(hwgen.load(_relu_mlp(tmp_path)))
    c, b, rt = _check(g, CONFIGS[cfg])
    kinds = [s.kind for s in b.segments]
    assert kinds == ["program", "host", "program", "host"], kinds
    assert set(b.host_reasons) == {n.name for n in b.graph.nodes if n.op in ("Relu", "Softmax")}
    relu = b.segments[1]
    assert list(relu.host_reads) and list(relu.host_writes)  # read back, written for the next program
