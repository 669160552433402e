"""LayerNorm, GELU and attention fusion: results before == after (onnxruntime golden),
then the structure. Graphs are written by hand in several spellings, and exported by
torch with both exporters."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import hwgen
from hwgen.passes import canonicalize, fold_constants, fuse_attention, fuse_gelu, fuse_layernorm

from conftest import make_model

F = TensorProto.FLOAT


def _check_same(path, g_before, g_after, n=3):
    sess = ort.InferenceSession(str(path))
    rng = np.random.default_rng(5)
    for _ in range(n):
        feeds = {i: (rng.standard_normal(g_before.tensors[i].shape) * 2).astype(g_before.tensors[i].dtype) for i in g_before.inputs}
        want = sess.run(None, feeds)
        got = hwgen.interpret(g_after, feeds)
        for name, w in zip(g_before.outputs, want):
            np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5)


def _ln_nodes(variant):
    """Decomposed LayerNorm over the last axis of x [2,5,8], three spellings."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["d"]),
    ]
    if variant == "pow_div":
        nodes += [helper.make_node("Pow", ["d", "two"], ["d2"])]
    else:
        nodes += [helper.make_node("Mul", ["d", "d"], ["d2"])]
    nodes += [
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[-1], keepdims=1),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
    ]
    if variant == "recip_mul":
        nodes += [helper.make_node("Reciprocal", ["s"], ["rs"]), helper.make_node("Mul", ["rs", "d"], ["n"])]
    else:
        nodes += [helper.make_node("Div", ["d", "s"], ["n"])]
    nodes += [helper.make_node("Mul", ["n", "gamma"], ["ng"]), helper.make_node("Add", ["beta", "ng"], ["y"])]
    return nodes


@pytest.mark.parametrize("variant", ["pow_div", "mul_div", "recip_mul"])
def test_fuse_layernorm_spellings(variant, save):
    rng = np.random.default_rng(0)
    inits = [
        ("two", np.float32(2.0)),
        ("eps", np.float32(1e-5)),
        ("gamma", rng.standard_normal(8).astype(np.float32)),
        ("beta", rng.standard_normal(8).astype(np.float32)),
    ]
    nodes = _ln_nodes(variant) + [helper.make_node("Relu", ["y"], ["out"])]
    m = make_model(nodes, [("x", F, [2, 5, 8])], [("out", F, [2, 5, 8])], inits, opset=17)
    p = save(m)
    g = hwgen.load(p)
    g2 = g.copy()
    assert fuse_layernorm(g2)
    g2.check()
    assert g2.op_histogram() == {"LayerNormalization": 1, "Relu": 1}
    ln = g2.nodes[0]
    assert ln.attrs["epsilon"] == pytest.approx(1e-5)
    _check_same(p, g, g2)


def test_layernorm_on_wrong_axis_is_not_fused(save):
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[1], keepdims=1),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
        helper.make_node("Div", ["d", "s"], ["y"]),
    ]
    m = make_model(nodes, [("x", F, [2, 5, 8])], [("y", F, [2, 5, 8])], [("eps", np.float32(1e-5))])
    g = hwgen.load(save(m))
    assert not fuse_layernorm(g)


def test_not_a_layernorm_is_not_fused(save):
    """Mean-centred and divided by the *mean* (not the RMS): structurally close, not LN."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Abs", ["d"], ["a"]),
        helper.make_node("ReduceMean", ["a"], ["v"], axes=[-1], keepdims=1),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Div", ["d", "ve"], ["y"]),
    ]
    m = make_model(nodes, [("x", F, [2, 8])], [("y", F, [2, 8])], [("eps", np.float32(1e-5))])
    g = hwgen.load(save(m))
    assert not fuse_layernorm(g)


@pytest.mark.parametrize("spelling", ["div_sqrt2", "mul_inv_sqrt2", "half_first"])
def test_fuse_gelu_erf(spelling, save):
    if spelling == "div_sqrt2":
        nodes = [
            helper.make_node("Div", ["x", "c"], ["a"]),
            helper.make_node("Erf", ["a"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["p"]),
            helper.make_node("Mul", ["x", "p"], ["q"]),
            helper.make_node("Mul", ["q", "half"], ["y"]),
        ]
        c = math.sqrt(2)
    elif spelling == "mul_inv_sqrt2":
        nodes = [
            helper.make_node("Mul", ["x", "c"], ["a"]),
            helper.make_node("Erf", ["a"], ["e"]),
            helper.make_node("Add", ["one", "e"], ["p"]),
            helper.make_node("Mul", ["p", "x"], ["q"]),
            helper.make_node("Mul", ["half", "q"], ["y"]),
        ]
        c = 1 / math.sqrt(2)
    else:
        nodes = [
            helper.make_node("Mul", ["x", "half"], ["hx"]),
            helper.make_node("Div", ["x", "c"], ["a"]),
            helper.make_node("Erf", ["a"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["p"]),
            helper.make_node("Mul", ["hx", "p"], ["y"]),
        ]
        c = math.sqrt(2)
    inits = [("c", np.float32(c)), ("one", np.float32(1)), ("half", np.float32(0.5))]
    m = make_model(nodes, [("x", F, [3, 16])], [("y", F, [3, 16])], inits)
    p = save(m)
    g = hwgen.load(p)
    g2 = g.copy()
    assert fuse_gelu(g2)
    assert g2.op_histogram() == {"Gelu": 1}
    assert g2.nodes[0].attrs["approximate"] == "none"
    _check_same(p, g, g2)


def test_fuse_gelu_tanh(save):
    k = math.sqrt(2 / math.pi)
    nodes = [
        helper.make_node("Pow", ["x", "three"], ["x3"]),
        helper.make_node("Mul", ["x3", "c1"], ["a"]),
        helper.make_node("Add", ["x", "a"], ["b"]),
        helper.make_node("Mul", ["b", "c2"], ["t_in"]),
        helper.make_node("Tanh", ["t_in"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["p"]),
        helper.make_node("Mul", ["x", "half"], ["hx"]),
        helper.make_node("Mul", ["hx", "p"], ["y"]),
    ]
    inits = [("three", np.float32(3)), ("c1", np.float32(0.044715)), ("c2", np.float32(k)), ("one", np.float32(1)), ("half", np.float32(0.5))]
    m = make_model(nodes, [("x", F, [4, 8])], [("y", F, [4, 8])], inits)
    p = save(m)
    g = hwgen.load(p)
    g2 = g.copy()
    assert fuse_gelu(g2)
    assert g2.op_histogram() == {"Gelu": 1} and g2.nodes[0].attrs["approximate"] == "tanh"
    _check_same(p, g, g2)


def test_plain_tanh_is_not_gelu(save):
    m = make_model([helper.make_node("Tanh", ["x"], ["y"])], [("x", F, [4])], [("y", F, [4])])
    g = hwgen.load(save(m))
    assert not fuse_gelu(g)


def _attn_model(scale_op="Mul", with_mask=False):
    B, H, S, D = 1, 2, 5, 4
    nodes = [helper.make_node("Transpose", ["k"], ["kT"], perm=[0, 1, 3, 2]), helper.make_node("MatMul", ["q", "kT"], ["s"])]
    if scale_op == "Mul":
        nodes.append(helper.make_node("Mul", ["s", "c"], ["ss"]))
        c = 1 / math.sqrt(D)
    else:
        nodes.append(helper.make_node("Div", ["s", "c"], ["ss"]))
        c = math.sqrt(D)
    last = "ss"
    inputs = [("q", F, [B, H, S, D]), ("k", F, [B, H, S, D]), ("v", F, [B, H, S, D])]
    if with_mask:
        nodes.append(helper.make_node("Add", ["ss", "mask"], ["sm"]))
        inputs.append(("mask", F, [B, 1, S, S]))
        last = "sm"
    nodes += [helper.make_node("Softmax", [last], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])]
    return make_model(nodes, inputs, [("y", F, [B, H, S, D])], [("c", np.float32(c))])


@pytest.mark.parametrize("scale_op", ["Mul", "Div"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fuse_attention(scale_op, with_mask, save):
    p = save(_attn_model(scale_op, with_mask))
    g = hwgen.load(p)
    g2 = g.copy()
    assert fuse_attention(g2)
    hist = g2.op_histogram()
    assert hist["Attention"] == 1 and "Softmax" not in hist and "MatMul" not in hist
    a = next(n for n in g2.nodes if n.op == "Attention")
    assert a.domain == "hwgen" and a.attrs["num_heads"] == 2
    assert a.attrs["scale"] == pytest.approx(0.5)
    _check_same(p, g, g2)


def test_softmax_without_matmuls_is_not_attention(save):
    m = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", F, [2, 3])], [("y", F, [2, 3])])
    g = hwgen.load(save(m))
    assert not fuse_attention(g)


def test_fold_constants_removes_shape_arithmetic(save):
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"]),
        helper.make_node("Concat", ["b1", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["y"]),
    ]
    inits = [("zero", np.array(0, np.int64)), ("ax", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))]
    m = make_model(nodes, [("x", F, [2, 3, 4])], [("y", F, [2, 12])], inits)
    p = save(m)
    g = hwgen.load(p)
    g2 = g.copy()
    assert fold_constants(g2)
    assert g2.op_histogram() == {"Reshape": 1}
    np.testing.assert_array_equal(g2.const(g2.nodes[0].inputs[1]), [2, -1])
    _check_same(p, g, g2)


# --- torch-exported models (written here, not by hwgen's model zoo) ---------------------
torch = pytest.importorskip("torch")


class _Block(torch.nn.Module):
    """A pre-norm transformer block written the plain way."""

    def __init__(self, d=16, heads=2, approximate="none"):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)
        self.act = torch.nn.GELU(approximate=approximate)
        self.h, self.d = heads, d

    def forward(self, x):
        b, s, d = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, s, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (d // self.h) ** -0.5
        y = (a.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(y)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


@pytest.mark.torch
@pytest.mark.parametrize("dynamo,opset", [(False, 13), (False, 17), (True, 18), (True, 20)])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_torch_block_fuses(dynamo, opset, approximate, tmp_path):
    torch.manual_seed(0)
    m = _Block(approximate=approximate).eval()
    x = torch.randn(1, 7, 16)
    p = tmp_path / "block.onnx"
    kw = {"dynamo": dynamo, "opset_version": opset}
    if dynamo:
        kw["external_data"] = False
    torch.onnx.export(m, (x,), str(p), input_names=["x"], output_names=["y"], **kw)
    g = hwgen.load(p)
    g2 = canonicalize(g)
    h = g2.op_histogram()
    assert h.get("LayerNormalization") == 2, h
    assert h.get("Gelu") == 1, h
    assert h.get("Attention") == 1, h
    assert "Softmax" not in h and "Erf" not in h and "ReduceMean" not in h
    _check_same(p, g, g2)
