"""Every fusion's numeric check rejects a fused op that is slightly wrong (mutation
tests: epsilon, scale, axis, approximation, k, normalisation, activation), on inputs of
realistic scale; regions that look like a pattern but are not fused are reported."""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import hwgen
from hwgen.errors import FusionRejectedWarning
from hwgen.ir import Node
from hwgen.passes import canonicalize, fold_constants, fuse_attention, fuse_gelu, fuse_layernorm
from hwgen.passes.fold_constants import remove_identities
from hwgen.passes.fuse_attention import verify_attention
from hwgen.passes.fuse_gelu import verify_gelu
from hwgen.passes.fuse_layernorm import verify_layernorm
from hwgen.passes.pattern import probe_inputs, single_input_regions

from conftest import make_model

F = TensorProto.FLOAT
D = 32


def _rejections(fn, g):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FusionRejectedWarning)
        changed = fn(g)
    return changed, [w.message for w in caught if issubclass(w.category, FusionRejectedWarning)]


def test_probe_inputs_span_realistic_scales():
    xs = probe_inputs((6, 40, D), np.float32)
    assert len(xs) == 4 and all(x.dtype == np.float32 and x.shape == (6, 40, D) for x in xs)
    std = np.concatenate([x.std(axis=-1).ravel() for x in xs])
    assert std.min() < 1e-2 and std.max() > 10  # rows from far below to far above 1
    assert not np.array_equal(xs[0], xs[1])  # several seeds


# --- LayerNorm ---------------------------------------------------------------------------
def _ln_model(eps=1e-5, eps_outside_sqrt=False, axis=-1):
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[axis], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[axis], keepdims=1),
    ]
    if eps_outside_sqrt:  # (x - m) / (sqrt(var) + eps): a different function
        nodes += [helper.make_node("Sqrt", ["v"], ["s0"]), helper.make_node("Add", ["s0", "eps"], ["s"])]
    else:
        nodes += [helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"])]
    nodes += [helper.make_node("Div", ["d", "s"], ["n"]), helper.make_node("Mul", ["n", "gamma"], ["ng"]),
              helper.make_node("Add", ["ng", "beta"], ["y"])]
    rng = np.random.default_rng(0)
    inits = [("eps", np.float32(eps)), ("gamma", rng.standard_normal(D).astype(np.float32)), ("beta", rng.standard_normal(D).astype(np.float32))]
    return make_model(nodes, [("x", F, [3, 7, D])], [("y", F, [3, 7, D])], inits)


def _ln_region(g):
    rm = next(n for n in g.nodes if n.op == "ReduceMean")
    return list(single_input_regions(g, "x", rm, 12))[-1]


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_layernorm_check_rejects_wrong_epsilon_scale_and_axis(eps, save):
    g = hwgen.load(save(_ln_model(eps)))
    region = _ln_region(g)
    gamma, beta = g.const("gamma"), g.const("beta")
    assert verify_layernorm(g, region, "x", eps, gamma, beta) is None
    # a tenth or ten times off, none, or BERT's 1e-12 against torch's 1e-5
    for wrong in ((1e-4, 1e-6, 0.0) if eps == 1e-5 else (1e-5, 1e-6, 1e-7)):
        why = verify_layernorm(g, region, "x", wrong, gamma, beta)
        assert why is not None and "differs" in why, wrong
    assert verify_layernorm(g, region, "x", eps, gamma * 1.001, beta) is not None  # scale (gamma) 0.1 % off
    assert verify_layernorm(g, region, "x", eps, gamma, beta, axis=-2) is not None  # another axis


def test_layernorm_with_epsilon_outside_the_root_is_rejected_and_reported(save):
    """(x - m) / (sqrt(var) + eps) is not LayerNorm; on rows of unit variance it differs by
    ~1e-5 relative only (what the old 2-sample check saw), on small-variance rows a lot."""
    p = save(_ln_model(eps_outside_sqrt=True))
    g = hwgen.load(p)
    changed, rejected = _rejections(fuse_layernorm, g)
    assert not changed and "LayerNormalization" not in g.op_histogram()
    assert len(rejected) == 1 and rejected[0].pattern == "layernorm" and "epsilon=1e-05" in rejected[0].reason
    assert rejected[0].anchor_op == "ReduceMean" and len(rejected[0].nodes) >= 7


def test_layernorm_on_another_axis_is_reported(save):
    g = hwgen.load(save(_ln_model(axis=1)))
    changed, rejected = _rejections(fuse_layernorm, g)
    assert not changed and rejected and "normalises axes [1]" in rejected[0].reason


# --- GELU ----------------------------------------------------------------------------------
def _gelu_model(c=1 / math.sqrt(2), cubic=None):
    if cubic is None:
        nodes = [helper.make_node("Mul", ["x", "c"], ["a"]), helper.make_node("Erf", ["a"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["x", "p"], ["q"]),
                 helper.make_node("Mul", ["q", "half"], ["y"])]
        inits = [("c", np.float32(c)), ("one", np.float32(1)), ("half", np.float32(0.5))]
    else:
        nodes = [helper.make_node("Pow", ["x", "three"], ["x3"]), helper.make_node("Mul", ["x3", "c1"], ["a"]),
                 helper.make_node("Add", ["x", "a"], ["b"]), helper.make_node("Mul", ["b", "c2"], ["t_in"]),
                 helper.make_node("Tanh", ["t_in"], ["t"]), helper.make_node("Add", ["t", "one"], ["p"]),
                 helper.make_node("Mul", ["x", "half"], ["hx"]), helper.make_node("Mul", ["hx", "p"], ["y"])]
        inits = [("three", np.float32(3)), ("c1", np.float32(cubic)), ("c2", np.float32(math.sqrt(2 / math.pi))),
                 ("one", np.float32(1)), ("half", np.float32(0.5))]
    return make_model(nodes, [("x", F, [4, D])], [("y", F, [4, D])], inits)


def test_gelu_check_tells_erf_from_tanh(save):
    for cubic, right, wrong in ((None, "none", "tanh"), (0.044715, "tanh", "none")):
        g = hwgen.load(save(_gelu_model(cubic=cubic)))
        anchor = next(n for n in g.nodes if n.op in ("Erf", "Tanh"))
        region = list(single_input_regions(g, "x", anchor, 6))[-1]
        assert verify_gelu(g, region, "x", right) is None
        assert verify_gelu(g, region, "x", wrong) is not None


@pytest.mark.parametrize("kind", ["erf-constant", "tanh-cubic"])
def test_gelu_lookalike_is_rejected_and_reported(kind, save):
    model = _gelu_model(c=0.7) if kind == "erf-constant" else _gelu_model(cubic=0.05)
    g = hwgen.load(save(model))
    changed, rejected = _rejections(fuse_gelu, g)
    assert not changed and "Gelu" not in g.op_histogram()
    assert rejected and rejected[0].pattern == "gelu" and rejected[0].anchor_op in ("Erf", "Tanh")


def test_plain_tanh_is_not_reported(save):
    g = hwgen.load(save(make_model([helper.make_node("Tanh", ["x"], ["y"])], [("x", F, [4])], [("y", F, [4])])))
    assert _rejections(fuse_gelu, g) == (False, [])


# --- attention -----------------------------------------------------------------------------
def _attn_model(axis=-1):
    B, H, S, Dh = 2, 2, 6, 8
    nodes = [helper.make_node("Transpose", ["k"], ["kT"], perm=[0, 1, 3, 2]), helper.make_node("MatMul", ["q", "kT"], ["s"]),
             helper.make_node("Mul", ["s", "c"], ["ss"]), helper.make_node("Add", ["ss", "mask"], ["sm"]),
             helper.make_node("Softmax", ["sm"], ["p"], axis=axis), helper.make_node("MatMul", ["p", "v"], ["y"])]
    inputs = [("q", F, [B, H, S, Dh]), ("k", F, [B, H, S, Dh]), ("v", F, [B, H, S, Dh]), ("mask", F, [B, 1, S, S])]
    return make_model(nodes, inputs, [("y", F, [B, H, S, Dh])], [("c", np.float32(1 / math.sqrt(Dh)))])


def test_attention_check_rejects_wrong_scale_and_missing_mask(save):
    g = hwgen.load(save(_attn_model()))
    chain = [n for n in g.nodes if n.op != "Transpose"]
    inputs = ["q", "kT", "v", "mask"]

    def fused(scale, with_mask=True):
        return [Node("Attention", "a", inputs if with_mask else inputs[:3], ["y"], {"scale": scale}, "hwgen")]

    right = 1 / math.sqrt(8)
    assert verify_attention(g, chain, inputs, "y", fused(right)) is None
    for wrong in (right * 1.01, right / 1.01, 1.0):
        assert verify_attention(g, chain, inputs, "y", fused(wrong)) is not None, wrong
    assert verify_attention(g, chain, inputs, "y", fused(right, with_mask=False)) is not None


def test_softmax_over_the_query_axis_is_reported(save):
    g = hwgen.load(save(_attn_model(axis=-2)))
    changed, rejected = _rejections(fuse_attention, g)
    assert not changed and "Attention" not in g.op_histogram()
    assert rejected and rejected[0].pattern == "attention" and "axis -2" in rejected[0].reason


def _onnx_attention(opset=23, **attrs):
    B, H, S, Dh = 1, 2, 5, 8
    hk = attrs.pop("kv_heads", H)
    node = helper.make_node("Attention", ["q", "k", "v", "mask"], ["y"], name="attn", **attrs)
    inputs = [("q", F, [B, H, S, Dh]), ("k", F, [B, hk, S, Dh]), ("v", F, [B, hk, S, Dh]), ("mask", F, [B, 1, S, S])]
    m = make_model([node], inputs, [("y", F, [B, H, S, Dh])], opset=opset)
    m.ir_version = 10
    return m


def test_onnx_attention_fusion_is_checked(save):
    p = save(_onnx_attention())
    g = hwgen.load(p)
    g2 = g.copy()
    changed, rejected = _rejections(fuse_attention, g2)
    assert changed and not rejected and g2.op_histogram() == {"Transpose": 1, "Attention": 1}
    # the check itself: the ONNX node against hwgen.Attention with a mutated scale
    n = g.nodes[0]
    tr = next(m for m in g2.nodes if m.op == "Transpose")
    att = next(m for m in g2.nodes if m.op == "Attention")
    assert verify_attention(g2, [n], ["q", "k", "v", "mask"], "y", [tr, att]) is None
    bad = Node("Attention", "bad", att.inputs, att.outputs, {**att.attrs, "scale": att.attrs["scale"] * 1.01}, "hwgen")
    assert verify_attention(g2, [n], ["q", "k", "v", "mask"], "y", [tr, bad]) is not None
    rng = np.random.default_rng(0)
    feeds = {i: rng.standard_normal(g.tensors[i].shape).astype(np.float32) for i in g.inputs}
    want = ort.InferenceSession(str(p)).run(None, feeds)[0]
    np.testing.assert_allclose(hwgen.interpret(g2, feeds)["y"], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs,words", [({"is_causal": 1}, "causal"), ({"kv_heads": 1}, "grouped-query"), ({"softcap": 5.0}, "soft-caps")])
def test_onnx_attention_features_the_fused_op_lacks_are_reported(attrs, words, save):
    g = hwgen.load(save(_onnx_attention(**attrs)))
    changed, rejected = _rejections(fuse_attention, g)
    assert not changed and g.op_histogram() == {"Attention": 1}
    assert rejected and words in rejected[0].reason and rejected[0].nodes == ["attn"]


# --- MoE -----------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def test_moe_check_rejects_wrong_k_normalisation_activation_and_gate_scale(tmp_path):
    import moe_zoo
    from hwgen.frontend import sample_inputs
    from hwgen.passes.fuse_moe import find_candidate, verify_moe

    torch.manual_seed(0)
    module = moe_zoo.StackedEinsum("softmax_then_topk", act="gelu", e=5, k=2).eval()
    p = tmp_path / "moe.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*moe_zoo.TOKENS, moe_zoo.D),), str(p), input_names=["x"], dynamo=False, opset_version=17)
    g = canonicalize(hwgen.load(p), passes=[remove_identities, fold_constants])
    anchor = next(n for n in g.nodes if n.op == "TopK")
    cand = find_candidate(g, anchor, hwgen.interpret(g, sample_inputs(g), keep_all=True))
    assert verify_moe(g, cand, 2, "softmax_then_topk") is None
    for k in (1, 3):
        assert verify_moe(g, cand, k, "softmax_then_topk") is not None
    for norm in ("softmax_topk_renorm", "topk_then_softmax", "topk", "sigmoid_then_topk"):
        assert verify_moe(g, cand, 2, norm) is not None, norm
    for act in ("gelu_tanh", "relu", "silu"):
        assert verify_moe(g, cand, 2, "softmax_then_topk", activation=act) is not None, act
    assert verify_moe(g, cand, 2, "softmax_then_topk", gate_scale=1.01) is not None


def test_canonicalize_reports_every_lookalike_once_per_region(save):
    """canonicalize re-runs the passes; the rejection of one region is the same each time."""
    g = hwgen.load(save(_ln_model(eps_outside_sqrt=True)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FusionRejectedWarning)
        canonicalize(g)
    keys = {(w.message.pattern, w.message.anchor) for w in caught if issubclass(w.category, FusionRejectedWarning)}
    assert len(keys) == 1
