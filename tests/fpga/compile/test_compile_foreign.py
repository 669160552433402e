"""Models no one here wrote (PyTorch's TransformerEncoder, Hugging Face ViT), compiled for
the accelerator and checked layer by layer on the instruction-set simulator."""

from __future__ import annotations

import numpy as np
import pytest

import hwgen
from fpga.compile import compile_graph
from fpga.compile.runtime import run_isa
from fpga.config import SMALL, AcceleratorConfig
from hwgen.frontend import sample_inputs

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.torch


def _export(model, x, path, dynamo, opset, names):
    kw = {"dynamo": dynamo, "opset_version": opset, "input_names": names[0], "output_names": names[1]}
    if dynamo:
        kw["external_data"] = False
    torch.onnx.export(model, (x,), str(path), **kw)


class _Wrap(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, pixel_values):
        return self.inner(pixel_values=pixel_values).logits


def hf_vit(attn: str, dim: int = 32, heads: int = 2):
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=dim, num_hidden_layers=2,
                                 num_attention_heads=heads, intermediate_size=2 * dim, num_labels=5,
                                 attn_implementation=attn)
    torch.manual_seed(0)
    return _Wrap(transformers.ViTForImageClassification(cfg).eval()).eval()


def torch_encoder_vit(dim=32, heads=4):
    torch.manual_seed(0)

    class TorchViT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Conv2d(3, dim, 4, 4)
            self.cls = torch.nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos = torch.nn.Parameter(torch.randn(1, 17, dim) * 0.02)
            layer = torch.nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu",
                                                     batch_first=True, norm_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = torch.nn.LayerNorm(dim)
            self.head = torch.nn.Linear(dim, 10)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
            return self.head(self.norm(self.encoder(t))[:, 0])

    return TorchViT().eval()


CASES = {
    "hf-eager-torchscript17": (lambda: hf_vit("eager"), False, 17),
    "hf-sdpa-dynamo18": (lambda: hf_vit("sdpa"), True, 18),
    "hf-head10-width40-dynamo18": (lambda: hf_vit("eager", dim=40, heads=4), True, 18),
    "torch-encoder-dynamo18": (torch_encoder_vit, True, 18),
    "torch-encoder-torchscript17": (torch_encoder_vit, False, 17),
}


@pytest.mark.parametrize("case", CASES)
def test_foreign_vit_bit_exact_on_the_accelerator(case, tmp_path):
    make, dynamo, opset = CASES[case]
    p = tmp_path / f"{case}.onnx"
    _export(make(), torch.randn(1, 3, 16, 16), p, dynamo, opset, (["x"], ["logits"]))
    g = hwgen.canonicalize(hwgen.load(p))
    for cfg in (AcceleratorConfig(), AcceleratorConfig(**SMALL)):
        c = compile_graph(g, cfg)
        b = c.bindings[0]
        assert not b.host_reasons, b.host_reasons  # attention scales/masks folded, every op on an engine
        outs, rt = run_isa(c, sample_inputs(g, seed=2))
        assert all(r.bit_exact for r in rt.layers.values()), [str(r.first) for r in rt.layers.values() if not r.bit_exact]
        np.testing.assert_array_equal(outs["logits"], rt.ref["logits"])
        float_out = hwgen.interpret(b.graph, sample_inputs(g, seed=2))["logits"]
        assert np.max(np.abs(outs["logits"] - float_out)) < 1e-3  # fixed point stays close to float


def mixtral_like(dim: int = 32, hidden: int = 64, experts: int = 4):
    """Two pre-norm blocks of torch's MultiheadAttention and a Mixtral-style MoE
    (softmax, top-2, renormalised; SwiGLU experts, no biases), written as people write it."""
    F = torch.nn.functional

    class Expert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = torch.nn.Linear(dim, hidden, bias=False)
            self.w3 = torch.nn.Linear(dim, hidden, bias=False)
            self.w2 = torch.nn.Linear(hidden, dim, bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class MoE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = torch.nn.Linear(dim, experts, bias=False)
            self.experts = torch.nn.ModuleList(Expert() for _ in range(experts))

        def forward(self, x):
            b, t, d = x.shape
            xf = x.reshape(-1, d)
            w, idx = torch.topk(torch.softmax(self.gate(xf), -1), 2, -1)
            w = w / w.sum(-1, keepdim=True)
            out = torch.zeros_like(xf)
            for e, ex in enumerate(self.experts):
                out = out + (w * (idx == e)).sum(-1, keepdim=True) * ex(xf)
            return out.reshape(b, t, d)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
            self.att = torch.nn.MultiheadAttention(dim, 2, batch_first=True)
            self.moe = MoE()

        def forward(self, x):
            h = self.ln1(x)
            x = x + self.att(h, h, h, need_weights=False)[0]
            return x + self.moe(self.ln2(x))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(16, dim)
            self.blocks = torch.nn.Sequential(Block(), Block())
            self.head = torch.nn.Linear(dim, 10)

        def forward(self, x):
            return self.head(self.blocks(self.embed(x)).mean(1))

    torch.manual_seed(0)
    return Net().eval()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo18"])
def test_gated_moe_runs_on_the_host_and_the_rest_on_the_accelerator(dynamo, tmp_path):
    """SwiGLU experts have no engine: the MoE is fused (so inspect and the report name it),
    left on the host with its reason, and the programs around it stay bit-exact."""
    from hwgen.numerics.fallback import FixedFallbackWarning

    p = tmp_path / "mixtral.onnx"
    _export(mixtral_like(), torch.randn(1, 17, 16), p, dynamo, 18 if dynamo else 17, (["x"], ["y"]))
    g = hwgen.canonicalize(hwgen.load(p))
    moes = [n for n in g.nodes if n.op == "MoE"]
    assert len(moes) == 2 and all(len(n.inputs) > 7 and n.inputs[7] for n in moes)  # gated: w3 present
    c = compile_graph(g, AcceleratorConfig())
    b = c.bindings[0]
    assert {n.name for n in moes} <= set(b.host_reasons)
    assert all("gated" in b.host_reasons[n.name] for n in moes)
    on_host = {n.op for n in b.graph.nodes if n.name in b.host_reasons}
    assert on_host == {"MoE", "ReduceMean"}, on_host  # attention, LayerNorm, linears stay on engines
    with pytest.warns(FixedFallbackWarning, match="gated"):
        outs, rt = run_isa(c, sample_inputs(g, seed=3))
    assert all(r.bit_exact for r in rt.layers.values()), [str(r.first) for r in rt.layers.values() if not r.bit_exact]
    np.testing.assert_array_equal(outs["y"], rt.ref["y"])
    import onnxruntime as ort

    want = ort.InferenceSession(str(p)).run(None, sample_inputs(g, seed=3))[0]
    assert np.max(np.abs(outs["y"] - want)) < 0.02 * np.max(np.abs(want)) + 1e-3


def sdpa_sparse_moe_vit(dim: int = 32, hidden: int = 64, experts: int = 4):
    """One pre-norm block written by hand: attention with F.scaled_dot_product_attention
    (dynamo at opset 23 exports one ONNX Attention op) and Hugging Face's sparse
    per-expert loop (softmax, top-2, renormalised; torch.where on the one-hot mask,
    index_add_) over plain GELU experts."""
    F = torch.nn.functional

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
            return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))

    class MoE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = torch.nn.Linear(dim, experts, bias=False)
            self.experts = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(),
                                                                   torch.nn.Linear(hidden, dim)) for _ in range(experts))

        def forward(self, x):
            b, n, d = x.shape
            xt = x.reshape(-1, d)
            w, sel = torch.topk(F.softmax(self.gate(xt), dim=-1), 2, dim=-1)
            w = w / w.sum(-1, keepdim=True)
            out = torch.zeros_like(xt)
            mask = F.one_hot(sel, experts).permute(2, 1, 0)
            for e, ex in enumerate(self.experts):
                slot, idx = torch.where(mask[e])
                out.index_add_(0, idx, ex(xt[idx]) * w[idx, slot, None])
            return out.reshape(b, n, d)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2, self.att, self.moe = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim), Attn(), MoE()

        def forward(self, x):
            x = x + self.att(self.ln1(x))
            return x + self.moe(self.ln2(x))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(16, dim)
            self.block = Block()
            self.head = torch.nn.Linear(dim, 10)

        def forward(self, x):
            return self.head(self.block(self.embed(x)).mean(1))

    torch.manual_seed(0)
    return Net().eval()


def test_sparse_moe_and_sdpa_at_opset_23_run_on_the_engines(tmp_path):
    """At opset 23 (dynamo: SDPA becomes one ONNX Attention op), hand-written SDPA attention and Hugging Face's sparse per-expert loop
    become hwgen Attention and MoE nodes that run on the engines, bit-exact
    on the instruction-set simulator, and close to onnxruntime."""
    import warnings

    import onnxruntime as ort

    p = tmp_path / "sdpa_moe.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(sdpa_sparse_moe_vit(), torch.randn(1, 17, 16), p, True, 23, (["x"], ["y"]))
    g0 = hwgen.load(p)
    assert "Attention" in g0.op_histogram() and g0.opset == 23
    g = hwgen.canonicalize(g0)
    hist = g.op_histogram()
    assert hist["MoE"] == 1 and hist["Attention"] == 1 and not {"TopK", "NonZero", "ScatterND", "Softmax"} & set(hist), hist
    moes = [n for n in g.nodes if n.op == "MoE"]
    assert all((n.attrs["top_k"], n.attrs["normalization"], n.attrs["activation"]) == (2, "softmax_topk_renorm", "gelu")
               for n in moes)
    c = compile_graph(g, AcceleratorConfig(**SMALL))
    b = c.bindings[0]
    on_host = {n.op for n in b.graph.nodes if n.name in b.host_reasons}
    assert on_host == {"ReduceMean"}, b.host_reasons  # the mean over tokens; attention, MoE, LayerNorm on engines
    feeds = sample_inputs(g, seed=2)
    outs, rt = run_isa(c, feeds)
    assert all(r.bit_exact for r in rt.layers.values()), [str(r.first) for r in rt.layers.values() if not r.bit_exact]
    np.testing.assert_array_equal(outs["y"], rt.ref["y"])
    want = ort.InferenceSession(str(p)).run(None, feeds)[0]
    assert np.max(np.abs(outs["y"] - want)) < 0.02 * np.max(np.abs(want)) + 1e-3
