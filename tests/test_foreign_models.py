"""Models that no one here wrote: PyTorch's own transformer layers and Hugging Face's
ViT, exported with both torch exporters. The float interpreter must match onnxruntime
and the canonicalisation must find every attention block, LayerNorm and GELU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import hwgen
from hwgen.analysis import find_patterns

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _export(model, args, path, dynamo, opset, names):
    kw = {"dynamo": dynamo, "opset_version": opset, "input_names": names[0], "output_names": names[1]}
    if dynamo:
        kw["external_data"] = False
    # not under no_grad: PyTorch's transformer "fast path" (not exportable) needs it
    torch.onnx.export(model, args, str(path), **kw)


def _same_as_ort(path, g, feeds):
    want = ort.InferenceSession(str(path)).run(None, feeds)
    got = hwgen.interpret(g, feeds)
    for name, w in zip(g.outputs, want):
        np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5)


class TorchViT(torch.nn.Module):
    """A ViT built from torch.nn.TransformerEncoder (PyTorch's code, not ours)."""

    def __init__(self, img=16, patch=4, dim=32, depth=2, heads=4, classes=10):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, dim, patch, patch)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = torch.nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


@pytest.mark.parametrize("dynamo,opset", [(False, 17), (True, 18), (True, 20)])
def test_torch_transformer_encoder_vit(dynamo, opset, tmp_path):
    torch.manual_seed(0)
    m = TorchViT().eval()
    x = torch.randn(1, 3, 16, 16)
    p = tmp_path / "vit.onnx"
    _export(m, (x,), p, dynamo, opset, (["x"], ["logits"]))
    g = hwgen.load(p)
    _same_as_ort(p, g, {"x": x.numpy()})
    g2 = hwgen.canonicalize(g)
    _same_as_ort(p, g2, {"x": x.numpy()})
    pats = find_patterns(g2)
    assert len(pats.attention) == 2 and all(a["heads"] == 4 for a in pats.attention)
    assert pats.layernorm == 2 * 2 + 1
    assert pats.gelu == 2


transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dynamo,opset", [(False, 17), (True, 18)])
def test_huggingface_vit(attn, dynamo, opset, tmp_path):
    cfg = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=5, attn_implementation=attn,
    )
    torch.manual_seed(0)
    m = transformers.ViTForImageClassification(cfg).eval()
    x = torch.randn(1, 3, 16, 16)

    class Wrap(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    p = tmp_path / "hf_vit.onnx"
    _export(Wrap(m).eval(), (x,), p, dynamo, opset, (["pixel_values"], ["logits"]))
    g = hwgen.load(p)
    _same_as_ort(p, g, {"pixel_values": x.numpy()})
    g2 = hwgen.canonicalize(g)
    _same_as_ort(p, g2, {"pixel_values": x.numpy()})
    pats = find_patterns(g2)
    assert len(pats.attention) == 2 and all(a["heads"] == 2 for a in pats.attention)
    assert pats.layernorm == 2 * 2 + 1 and pats.gelu == 2



class SdpaBlock(torch.nn.Module):
    """Attention through torch's scaled_dot_product_attention (opset 23: one ONNX Attention op)."""

    def __init__(self, d=16, heads=2, sdpa=True):
        super().__init__()
        self.qkv, self.proj, self.h, self.sdpa = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d), heads, sdpa

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        else:  # torch cannot export SDPA below opset 14
            y = torch.softmax(q @ k.transpose(-1, -2) / (d // self.h) ** 0.5, -1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


@pytest.mark.parametrize("opset", [13, 15, 17, 18, 20, 21, 23])
def test_opsets_13_to_23(opset, tmp_path):
    torch.manual_seed(0)
    m = SdpaBlock(sdpa=opset >= 14).eval()
    x = torch.randn(1, 5, 16)
    p = tmp_path / f"sdpa{opset}.onnx"
    _export(m, (x,), p, opset >= 18, opset, (["x"], ["y"]))
    g = hwgen.load(p)
    assert g.opset == opset
    _same_as_ort(p, g, {"x": x.numpy()})
    g2 = hwgen.canonicalize(g)
    _same_as_ort(p, g2, {"x": x.numpy()})
    pats = find_patterns(g2)
    assert len(pats.attention) == 1 and pats.attention[0]["heads"] == 2


class _FirstOutput(torch.nn.Module):
    """A Hugging Face block's hidden states alone (some blocks also return router logits)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        return y[0] if isinstance(y, tuple) else y


def _hf_moe_block(kind):
    """Hugging Face's own sparse MoE blocks, tiny, with their export-friendly
    ``batched_mm`` experts (the eager experts loop over the experts a batch hits: dynamo
    cannot export that, and TorchScript bakes the traced experts into the graph):
    weights gathered per token by expert id, a fused gate_up projection split in two."""
    if kind == "mixtral":
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

        cfg = transformers.MixtralConfig(hidden_size=16, intermediate_size=8, num_local_experts=4, num_experts_per_tok=2,
                                         experts_implementation="batched_mm")
        block = MixtralSparseMoeBlock(cfg)
    else:
        from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

        cfg = transformers.Qwen2MoeConfig(hidden_size=16, moe_intermediate_size=8, shared_expert_intermediate_size=12, num_experts=4,
                                          num_experts_per_tok=2, experts_implementation="batched_mm")
        block = Qwen2MoeSparseMoeBlock(cfg)
    torch.manual_seed(0)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)

    return _FirstOutput(block).eval()


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("kind,norm", [("mixtral", "softmax_topk_renorm"), ("qwen2_moe", "softmax_then_topk")])
def test_huggingface_moe_blocks(kind, norm, dynamo, tmp_path):
    """Mixtral (renormalised top-2) and Qwen2-MoE (top-2 without renormalisation, plus a
    sigmoid-gated shared expert left outside) become one gated (SwiGLU) hwgen.MoE."""
    import warnings

    m = _hf_moe_block(kind)
    x = torch.randn(2, 5, 16)
    p = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(m, (x,), p, dynamo, 18 if dynamo else 17, (["x"], ["y"]))
    g = hwgen.load(p)
    g2 = hwgen.canonicalize(g)
    (moe,) = find_patterns(g2).moe
    assert (moe["experts"], moe["top_k"], moe["normalization"], moe["activation"], moe["gated"]) == (4, 2, norm, "silu", True)
    assert not {"TopK", "GatherND", "Gather", "Split", "Slice"} & set(g2.op_histogram())
    for seed in range(3):
        xs = np.random.default_rng(seed).standard_normal((2, 5, 16)).astype(np.float32) * 1.5
        _same_as_ort(p, g2, {"x": xs})


@pytest.mark.parametrize("kind,impl,words", [
    ("mixtral", "eager", ("traced loop over the experts hit", "experts.gate_up_proj", "Gather", "batched_mm")),
    ("deepseek_v3", "batched_mm", ("group-limited routing", "n_group")),
])
def test_huggingface_moe_blocks_hwgen_does_not_fuse_are_named(kind, impl, words, tmp_path):
    """Hugging Face blocks exported by TorchScript that are not hwgen.MoE are reported by
    name, with the node and op, instead of being left unfused in silence: Mixtral's eager
    experts (the trace picks each expert's weights by a run-time index from NonZero, one
    call per expert hit while tracing) and DeepSeek-V3's group-limited sigmoid router.
    The graph left unfused still equals onnxruntime."""
    import warnings

    from hwgen.errors import FusionRejectedWarning

    if kind == "mixtral":
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock as Block

        cfg = transformers.MixtralConfig(hidden_size=16, intermediate_size=8, num_local_experts=4, num_experts_per_tok=2,
                                         experts_implementation=impl)
    else:
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE as Block

        cfg = transformers.DeepseekV3Config(hidden_size=16, intermediate_size=12, moe_intermediate_size=8, n_routed_experts=4,
                                            num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                                            experts_implementation=impl)
    torch.manual_seed(0)
    block = Block(cfg)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    for b in block.buffers():
        b.normal_(std=0.3) if b.is_floating_point() else None

    x = torch.randn(2, 5, 16)
    p = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(_FirstOutput(block).eval(), (x,), p, False, 17, (["x"], ["y"]))
    g = hwgen.load(p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FusionRejectedWarning)
        g2 = hwgen.canonicalize(g)
    rejected = [w.message for w in caught if issubclass(w.category, FusionRejectedWarning)]
    assert "MoE" not in g2.op_histogram()
    assert rejected and rejected[-1].pattern == "moe" and rejected[-1].anchor_op == "TopK", [str(r) for r in rejected]
    assert all(w in rejected[-1].reason for w in words), rejected[-1].reason
    _same_as_ort(p, g2, {"x": x.numpy()})
