"""MoE layers written in plain torch the common ways (tests/passes/moe_zoo.py), each
exported by both torch exporters (dynamo at its default opset, TorchScript at 17): every
token-choice style becomes one hwgen.MoE with the expected experts, k, normalisation,
activation and gating, nothing of the routing is left, and hwgen's float interpreter
equals onnxruntime on the original file (golden from onnxruntime) on several inputs.
Expert-choice routing, token-dropping capacity limits, DeepSeek-V3's selection bias,
renormalised sigmoid weights and group-limited routing are not fused and are reported by
name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import hwgen  # noqa: E402
from hwgen.analysis import find_patterns  # noqa: E402
from hwgen.errors import FusionRejectedWarning  # noqa: E402
from hwgen.passes import canonicalize  # noqa: E402

from moe_zoo import EXPORTERS_OF, STYLES, example_inputs  # noqa: E402

pytestmark = pytest.mark.torch
EXPORTERS = ["dynamo", "torchscript"]


def _export(style, exporter, path):
    torch.manual_seed(0)
    module = STYLES[style][0]().eval()
    args, names = example_inputs(style)
    kw = {"dynamo": True, "external_data": False} if exporter == "dynamo" else {"dynamo": False, "opset_version": 17}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, **kw)
    return path


def _feeds(g, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for name in g.inputs:
        t = g.tensors[name]
        if np.issubdtype(t.dtype, np.floating):
            out[name] = (rng.standard_normal(t.shape) * 1.5).astype(t.dtype)
        else:  # the task id
            out[name] = np.array(seed % 3, dtype=t.dtype).reshape(t.shape)
    return out


@pytest.mark.parametrize("style,exporter", [(s, e) for s in STYLES for e in EXPORTERS_OF.get(s, EXPORTERS)])
def test_moe_style(style, exporter, tmp_path):
    _, expected, *words = STYLES[style]
    path = _export(style, exporter, tmp_path / f"{style}.onnx")
    g = hwgen.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FusionRejectedWarning)
        g2 = canonicalize(g)
    rejected = [w.message for w in caught if issubclass(w.category, FusionRejectedWarning)]
    moes = [n for n in g2.nodes if n.op == "MoE"]
    if expected is None:
        assert not moes, g2.op_histogram()
        assert rejected and all(w in rejected[0].reason for w in words[0]), [str(r) for r in rejected]
        assert rejected[0].pattern == "moe" and rejected[0].anchor_op in ("TopK", "ArgMax")
    else:
        assert len(moes) == 1 and not [r for r in rejected if r.pattern == "moe"], (g2.op_histogram(), [str(r) for r in rejected])
        node = moes[0]
        gated = len(node.inputs) > 7 and bool(node.inputs[7])
        got = {k: node.attrs[k] for k in ("num_experts", "top_k", "normalization", "activation")} | {"gated": gated}
        assert got == expected
        h = g2.op_histogram()
        for op in ("TopK", "ArgMax", "NonZero", "ScatterND", "ScatterElements", "GatherND", "Einsum", "Softmax", "OneHot"):
            assert op not in h, h
        assert not any(t.dynamic for t in g2.tensors.values())
        pat = find_patterns(g2).moe[0]
        assert (pat["experts"], pat["top_k"], pat["normalization"], pat["gated"]) == (
            expected["num_experts"], expected["top_k"], expected["normalization"], expected["gated"])
        if style == "router-task-embedding":  # the task embedding's projection is the gate bias, chosen at run time
            assert pat["gate_bias"] and pat["gate_bias_is_input_dependent"]
    sess = ort.InferenceSession(str(path))
    for seed in range(3):
        feeds = _feeds(g, seed)
        want = sess.run(None, feeds)
        got = hwgen.interpret(g2, feeds)
        for name, w in zip(g.outputs, want):
            np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5)


def test_inspect_names_moe_normalisation_gate_bias_and_rejections(tmp_path):
    """`hwgen inspect` on a router with a task embedding (the gate bias comes from the
    task at run time) and on expert-choice routing (reported by name)."""
    import json
    import subprocess

    from conftest import hwgen_cmd

    def inspect(style):
        path = _export(style, "torchscript", tmp_path / f"{style}.onnx")
        r = subprocess.run(hwgen_cmd() + ["inspect", str(path), "--json"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    s = inspect("router-task-embedding")
    (moe,) = s["moe"]
    assert (moe["experts"], moe["top_k"], moe["normalization"], moe["activation"], moe["gated"]) == (4, 2, "softmax_topk_renorm", "gelu", False)
    assert moe["gate_bias_is_input_dependent"] and not moe["gate_is_input_dependent"]
    assert s["rejected"] == []
    s = inspect("expert-choice")
    assert s["moe"] == [] and [r["pattern"] for r in s["rejected"]] == ["moe"]
    assert s["rejected"][0]["anchor_op"] == "TopK" and "expert-choice routing" in s["rejected"][0]["why"]
