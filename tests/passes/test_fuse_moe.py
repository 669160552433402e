"""MoE fusion: torch MoE modules written in several styles (Switch, HF SwitchTransformers,
Mixtral with plain and SwiGLU experts, M3ViT task-gated, GShard/DeepSpeed einsum dispatch
and two-ArgMax top-2, sigmoid routers, shared experts), dense masked and sparse dispatch, exported with both
exporters (dynamo at opsets 18 and 23, torchscript at 17 and 20), become exactly the
expected hwgen.MoE nodes; results equal onnxruntime on the original file (golden from
onnxruntime, never from hwgen). Look-alikes are not fused. The op itself is checked
against torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import hwgen  # noqa: E402
from hwgen.interp import run_node  # noqa: E402
from hwgen.ir import Node  # noqa: E402
from hwgen.passes import canonicalize  # noqa: E402

pytestmark = pytest.mark.torch

D, TOKENS = 16, (2, 5)


def _mlp(d, h, act, bias=True):
    return nn.Sequential(nn.Linear(d, h, bias=bias), act, nn.Linear(h, d, bias=bias))


# --- MoE modules, one style each ----------------------------------------------------------
class SwitchDense(nn.Module):
    """Switch Transformer, top-1: ArgMax of softmax(router), one-hot mask, every expert on
    every token, output scaled by the chosen probability. Router with bias, ReLU experts."""

    def __init__(self, e=4, h=32):
        super().__init__()
        self.e, self.router = e, nn.Linear(D, e)
        self.experts = nn.ModuleList(_mlp(D, h, nn.ReLU()) for _ in range(e))

    def forward(self, x):
        p = torch.softmax(self.router(x), dim=-1)
        pmax, idx = p.max(dim=-1, keepdim=True)
        mask = F.one_hot(idx.squeeze(-1), self.e).to(x.dtype)
        out = sum(mask[..., i : i + 1] * ex(x) for i, ex in enumerate(self.experts))
        return out * pmax


class SwitchScatter(nn.Module):
    """Switch top-1, sparse: ArgMax of the logits, tokens flattened, index_select, expert,
    scale, scatter back (ScatterElements)."""

    def __init__(self, e=4, h=32):
        super().__init__()
        self.router = nn.Linear(D, e, bias=False)
        self.experts = nn.ModuleList(_mlp(D, h, nn.ReLU()) for _ in range(e))

    def forward(self, x):
        xt = x.reshape(-1, x.shape[-1])
        logits = self.router(xt)
        route = torch.argmax(logits, dim=-1)
        pmax = torch.softmax(logits, dim=-1).max(dim=-1).values
        out = torch.zeros_like(xt)
        for i, ex in enumerate(self.experts):
            idx = torch.nonzero(route == i).squeeze(1)
            val = ex(xt.index_select(0, idx)) * pmax.index_select(0, idx).unsqueeze(-1)
            out = out.scatter(0, idx.unsqueeze(1).expand(-1, xt.shape[1]), val)
        return out.reshape(x.shape)


class HFSwitch(nn.Module):
    """Hugging Face SwitchTransformers style: ArgMax of the router probabilities, boolean
    mask indexing ``next[mask] = expert(x[mask])`` on a copy of x, scaled by the max
    probability. (torchscript bakes the routed-token count of the trace into a Reshape of
    the boolean index_put, so only the dynamo export is a valid model.)"""

    def __init__(self, e=4, h=32):
        super().__init__()
        self.e, self.classifier = e, nn.Linear(D, e, bias=False)
        self.experts = nn.ModuleList(_mlp(D, h, nn.ReLU(), bias=False) for _ in range(e))

    def forward(self, x):
        probs = torch.softmax(self.classifier(x), dim=-1)
        mask = F.one_hot(torch.argmax(probs, dim=-1), num_classes=self.e)
        pmax = torch.max(probs, dim=-1).values.unsqueeze(-1)
        nxt = x.clone()
        for i, ex in enumerate(self.experts):
            tok = mask[:, :, i].bool()
            nxt[tok] = ex(x[tok]).to(nxt.dtype)
        return pmax * nxt


class MixtralDense(nn.Module):
    """Mixtral-like top-2, dense: TopK of the logits, softmax over the k values, weights
    scattered into [.., E] (ScatterElements), every expert on every token. No biases.
    ``router="sigmoid"``: TopK of sigmoid(logits), the values are the weights (sigmoid
    gates); ``temperature``: logits divided by it (and a router bias)."""

    def __init__(self, e=6, h=32, act=None, router="softmax", temperature=None):
        super().__init__()
        self.router, self.temperature = router, temperature
        self.gate = nn.Linear(D, e, bias=temperature is not None)
        self.experts = nn.ModuleList(_mlp(D, h, act or nn.GELU(), bias=False) for _ in range(e))

    def forward(self, x):
        logits = self.gate(x)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.router == "sigmoid":
            v, i = torch.topk(torch.sigmoid(logits), 2, dim=-1)
        else:
            v, i = torch.topk(logits, 2, dim=-1)
            v = torch.softmax(v, dim=-1)
        w = torch.zeros_like(logits).scatter(-1, i, v)
        return sum(w[..., j : j + 1] * ex(x) for j, ex in enumerate(self.experts))


class SwiGLUMoE(nn.Module):
    """Real Mixtral experts: w2(silu(w1 x) * w3 x), three matrices per expert: hwgen.MoE's
    gated experts (inputs w3, b3)."""

    def __init__(self, e=4, h=32):
        super().__init__()
        self.gate = nn.Linear(D, e, bias=False)
        self.w1 = nn.ModuleList(nn.Linear(D, h, bias=False) for _ in range(e))
        self.w3 = nn.ModuleList(nn.Linear(D, h, bias=False) for _ in range(e))
        self.w2 = nn.ModuleList(nn.Linear(h, D, bias=False) for _ in range(e))

    def forward(self, x):
        logits = self.gate(x)
        v, i = torch.topk(logits, 2, dim=-1)
        w = torch.zeros_like(logits).scatter(-1, i, torch.softmax(v, dim=-1))
        return sum(w[..., j : j + 1] * self.w2[j](F.silu(self.w1[j](x)) * self.w3[j](x)) for j in range(len(self.w1)))


class MixtralSparse(nn.Module):
    """Hugging Face Mixtral sparse block (plain MLP experts): softmax, TopK, renormalise,
    one_hot expert mask, torch.where (NonZero), index_add_."""

    def __init__(self, e=4, h=32, act=None):
        super().__init__()
        self.e, self.gate = e, nn.Linear(D, e, bias=False)
        self.experts = nn.ModuleList(_mlp(D, h, act or nn.GELU(), bias=False) for _ in range(e))

    def forward(self, x):
        b, n, d = x.shape
        xt = x.view(-1, d)
        rw = F.softmax(self.gate(xt), dim=1, dtype=torch.float)
        rw, sel = torch.topk(rw, 2, dim=-1)
        rw = rw / rw.sum(dim=-1, keepdim=True)
        final = torch.zeros((b * n, d), dtype=x.dtype)
        mask = F.one_hot(sel, num_classes=self.e).permute(2, 1, 0)
        for e in range(self.e):
            slot, rows = torch.where(mask[e])
            out = self.experts[e](xt[None, rows].reshape(-1, d)) * rw[rows, slot, None]
            final.index_add_(0, rows, out.to(x.dtype))
        return final.reshape(b, n, d)


class TaskMoE(nn.Module):
    """M3ViT-style task-conditioned gate ``gate[task]`` ([T, D, E] parameter, task a graph
    input), softmax then top-2 (optionally renormalised), stacked expert weights. Dense:
    torch.einsum over all experts; sparse: NonZero / index_select / index_add."""

    def __init__(self, mode="dense", renorm=False, bias=True, e=4, h=24, tasks=3, linear_gate=False, temperature=1.0):
        super().__init__()
        self.mode, self.renorm, self.e, self.linear_gate, self.temperature = mode, renorm, e, linear_gate, temperature
        self.gate = nn.Parameter(torch.randn(tasks, e, D) * 0.5 if linear_gate else torch.randn(tasks, D, e) * 0.5)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)
        self.b1 = nn.Parameter(torch.randn(e, h) * 0.1) if bias else None
        self.b2 = nn.Parameter(torch.randn(e, D) * 0.1) if bias else None

    def forward(self, x, task):
        if self.linear_gate:  # F.linear on flattened tokens: Gemm(transB) on a gathered weight
            logits = F.linear(x.reshape(-1, D), self.gate[task]) / self.temperature
            p = torch.softmax(logits, dim=-1).reshape(x.shape[:-1] + (self.e,))
        else:
            p = torch.softmax(x @ self.gate[task], dim=-1)
        v, i = torch.topk(p, 2, dim=-1)
        if self.renorm:
            v = v / v.sum(-1, keepdim=True)
        if self.mode == "dense":
            w = ((i.unsqueeze(-1) == torch.arange(self.e)).to(x.dtype) * v.unsqueeze(-1)).sum(-2)
            h = torch.einsum("bnd,edh->bneh", x, self.w1)
            h = F.gelu(h + self.b1 if self.b1 is not None else h)
            y = torch.einsum("bneh,ehd->bned", h, self.w2)
            y = y + self.b2 if self.b2 is not None else y
            return (y * w.unsqueeze(-1)).sum(-2)
        if self.mode == "bmm":  # the bundled M3ViT's dense form: [B,1,N,D] @ [E,D,H]
            w = ((i.unsqueeze(-1) == torch.arange(self.e)).to(x.dtype) * v.unsqueeze(-1)).sum(-2)
            h = F.gelu(torch.matmul(x.unsqueeze(1), self.w1) + self.b1.unsqueeze(1))
            y = torch.matmul(h, self.w2) + self.b2.unsqueeze(1)
            return (y * w.transpose(1, 2).unsqueeze(-1)).sum(dim=1)
        xt, it, vt = x.reshape(-1, D), i.reshape(-1, 2), v.reshape(-1, 2)
        out = torch.zeros_like(xt)
        for e in range(self.e):
            hit = it == e
            rows = torch.nonzero(hit.any(-1)).squeeze(1)
            h = xt[rows] @ self.w1[e]
            h = F.gelu(h + self.b1[e] if self.b1 is not None else h)
            y = h @ self.w2[e]
            y = y + self.b2[e] if self.b2 is not None else y
            out = out.index_add(0, rows, y * (vt * hit).sum(-1)[rows][:, None])
        return out.reshape(x.shape)


class GShardEinsum(nn.Module):
    """GShard/DeepSpeed top-1 with einsum dispatch and combine over a capacity axis
    (cumsum positions), stacked expert weights as einsum. With capacity >= tokens no token
    is dropped (an MoE); with a smaller capacity tokens are dropped (not an MoE)."""

    def __init__(self, e=4, h=32, capacity=TOKENS[0] * TOKENS[1], einsum_gate=False):
        super().__init__()
        self.e, self.c, self.einsum_gate = e, capacity, einsum_gate
        self.wg = nn.Linear(D, e, bias=False)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.b1 = nn.Parameter(torch.randn(e, h) * 0.1)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)
        self.b2 = nn.Parameter(torch.randn(e, D) * 0.1)

    def forward(self, x):
        xs = x.reshape(-1, x.shape[-1])
        # the gate as nn.Linear, or as GShard's einsum on an [E, D] weight
        logits = torch.einsum("sm,em->se", xs, self.wg.weight) if self.einsum_gate else self.wg(xs)
        gates = torch.softmax(logits, dim=1)
        mask = F.one_hot(torch.argmax(gates, dim=1), self.e).to(x.dtype)
        loc = torch.cumsum(mask, dim=0) - 1
        mask = mask * (loc < self.c).to(x.dtype)
        g1 = (gates * mask).sum(dim=1)
        loc1 = (loc * mask).sum(dim=1).long()
        combine = g1[:, None, None] * mask[:, :, None] * F.one_hot(loc1, self.c).to(x.dtype)[:, None, :]
        xe = torch.einsum("sec,sm->ecm", (combine != 0).to(x.dtype), xs)
        h = torch.relu(torch.einsum("ecm,emh->ech", xe, self.w1) + self.b1[:, None, :])
        ye = torch.einsum("ech,ehm->ecm", h, self.w2) + self.b2[:, None, :]
        return torch.einsum("sec,ecm->sm", combine, ye).reshape(x.shape)


class GShardTop2(nn.Module):
    """GShard/DeepSpeed top-2 by two ArgMax: the second on the logits with the first
    masked to -inf (Where), gates renormalised over the two, dense combine."""

    def __init__(self, e=5, h=24):
        super().__init__()
        self.e, self.wg = e, nn.Linear(D, e, bias=False)
        self.experts = nn.ModuleList(_mlp(D, h, nn.GELU()) for _ in range(e))

    def forward(self, x):
        logits = self.wg(x)
        gates = torch.softmax(logits, dim=-1)
        mask1 = F.one_hot(torch.argmax(gates, dim=-1), self.e).to(x.dtype)
        mask2 = F.one_hot(torch.argmax(logits.masked_fill(mask1.bool(), float("-inf")), dim=-1), self.e).to(x.dtype)
        g1, g2 = (gates * mask1).sum(-1, keepdim=True), (gates * mask2).sum(-1, keepdim=True)
        denom = torch.clamp(g1 + g2, min=torch.finfo(x.dtype).eps)
        combine = g1 / denom * mask1 + g2 / denom * mask2
        return sum(combine[..., i : i + 1] * ex(x) for i, ex in enumerate(self.experts))


class SharedExpert(nn.Module):
    """DeepSeek-style: a routed top-2 MoE plus an always-on shared expert. The routed part
    is one MoE; the shared expert stays outside it."""

    def __init__(self):
        super().__init__()
        self.moe, self.shared = MixtralDense(e=4), _mlp(D, 32, nn.GELU())

    def forward(self, x):
        return self.moe(x) + self.shared(x)


class TwoLayers(nn.Module):
    """Two MoE layers with a residual and LayerNorm between: two MoE nodes."""

    def __init__(self):
        super().__init__()
        self.ln1, self.moe1 = nn.LayerNorm(D), MixtralSparse()
        self.ln2, self.moe2 = nn.LayerNorm(D), SwitchDense()

    def forward(self, x):
        x = x + self.moe1(self.ln1(x))
        return x + self.moe2(self.ln2(x))


class TopKPooling(nn.Module):
    """Not an MoE: TopK of softmax(projection) pools features beside one MLP."""

    def __init__(self):
        super().__init__()
        self.proj, self.fc1, self.fc2 = nn.Linear(D, 6), nn.Linear(D, 32), nn.Linear(32, D)

    def forward(self, x):
        v, i = torch.topk(torch.softmax(self.proj(x), -1), 2, dim=-1)
        return self.fc2(F.relu(self.fc1(x))) * v.sum(-1, keepdim=True) + x * i[..., :1].to(x.dtype)


_X = ("x",)
_XT = ("x", "task")
#: id -> (module factory, input names, expected MoE attrs (one dict per MoE node))
CASES = {
    "switch-dense-onehot": (SwitchDense, _X, [dict(num_experts=4, top_k=1, activation="relu", normalization="softmax_then_topk")]),
    "switch-sparse-scatter": (SwitchScatter, _X, [dict(num_experts=4, top_k=1, activation="relu", normalization="softmax_then_topk")]),
    "hf-switch-boolmask": (HFSwitch, _X, [dict(num_experts=4, top_k=1, activation="relu", normalization="softmax_then_topk")]),
    "mixtral-dense": (MixtralDense, _X, [dict(num_experts=6, top_k=2, activation="gelu", normalization="topk_then_softmax")]),
    "mixtral-dense-gelu-tanh": (
        lambda: MixtralDense(act=nn.GELU(approximate="tanh")),
        _X,
        [dict(num_experts=6, top_k=2, activation="gelu_tanh")],
    ),
    "mixtral-sparse": (MixtralSparse, _X, [dict(num_experts=4, top_k=2, activation="gelu", normalization="softmax_topk_renorm")]),
    "mixtral-sparse-silu": (lambda: MixtralSparse(act=nn.SiLU()), _X, [dict(num_experts=4, top_k=2, activation="silu")]),
    "m3vit-task-dense-einsum": (TaskMoE, _XT, [dict(num_experts=4, top_k=2, activation="gelu", normalization="softmax_then_topk")]),
    "m3vit-task-sparse-renorm-nobias": (
        lambda: TaskMoE("sparse", renorm=True, bias=False),
        _XT,
        [dict(num_experts=4, top_k=2, activation="gelu", normalization="softmax_topk_renorm")],
    ),
    "m3vit-task-bmm-linear-gate": (
        lambda: TaskMoE("bmm", linear_gate=True),
        _XT,
        [dict(num_experts=4, top_k=2, activation="gelu", normalization="softmax_then_topk")],
    ),
    "m3vit-task-sparse-linear-gate": (
        lambda: TaskMoE("sparse", renorm=True, linear_gate=True, temperature=0.6),
        _XT,
        [dict(num_experts=4, top_k=2, activation="gelu", normalization="softmax_topk_renorm")],
    ),
    "sigmoid-router-temperature": (
        lambda: MixtralDense(e=5, router="sigmoid", temperature=0.7),
        _X,
        [dict(num_experts=5, top_k=2, activation="gelu", normalization="sigmoid_then_topk")],
    ),
    "gshard-einsum-dispatch": (GShardEinsum, _X, [dict(num_experts=4, top_k=1, activation="relu", normalization="softmax_then_topk")]),
    "gshard-einsum-gate": (
        lambda: GShardEinsum(einsum_gate=True),
        _X,
        [dict(num_experts=4, top_k=1, activation="relu", normalization="softmax_then_topk")],
    ),
    "gshard-top2-two-argmax": (GShardTop2, _X, [dict(num_experts=5, top_k=2, activation="gelu", normalization="softmax_topk_renorm")]),
    "shared-expert": (SharedExpert, _X, [dict(num_experts=4, top_k=2, activation="gelu")]),
    "mixtral-swiglu": (SwiGLUMoE, _X, [dict(num_experts=4, top_k=2, activation="silu", normalization="topk_then_softmax")]),
    "two-layers": (TwoLayers, _X, [dict(num_experts=4, top_k=2), dict(num_experts=4, top_k=1)]),
}
_DYNAMO_ONLY = {"hf-switch-boolmask": "torchscript bakes the traced token count into the boolean index_put (invalid model)"}
EXPORTERS = [("dynamo", 18), ("dynamo", 23), ("torchscript", 17), ("torchscript", 20)]


def _export(module, names, exporter, opset, path):
    torch.manual_seed(0)
    m = module().eval()
    args = (torch.randn(*TOKENS, D),) + ((torch.tensor(1),) if "task" in names else ())
    kw = {"dynamo": True, "external_data": False} if exporter == "dynamo" else {"dynamo": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, str(path), input_names=list(names), opset_version=opset, **kw)
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


def _check_same(path, g_before, g_after, n=4):
    sess = ort.InferenceSession(str(path))
    for seed in range(n):
        feeds = _feeds(g_before, seed)
        want = sess.run(None, feeds)
        got = hwgen.interpret(g_after, feeds)
        for name, w in zip(g_before.outputs, want):
            np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5)


def _fuse(path):
    g = hwgen.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g2 = canonicalize(g)
    return g, g2, [str(w.message) for w in caught if "fuse_moe" in str(w.message)]


@pytest.mark.parametrize("exporter,opset", EXPORTERS, ids=[f"{e}{o}" for e, o in EXPORTERS])
@pytest.mark.parametrize("case", list(CASES))
def test_moe_styles_fuse(case, exporter, opset, tmp_path):
    module, names, expected = CASES[case]
    if case in _DYNAMO_ONLY and exporter != "dynamo":
        pytest.skip(_DYNAMO_ONLY[case])
    path = _export(module, names, exporter, opset, tmp_path / f"{case}.onnx")
    g, g2, warned = _fuse(path)
    moes = [n for n in g2.nodes if n.op == "MoE"]
    assert len(moes) == len(expected), (g2.op_histogram(), warned)
    for node, want in zip(moes, expected):
        assert node.domain == "hwgen"
        assert {k: node.attrs[k] for k in want} == want
        assert (len(node.inputs) > 7 and bool(node.inputs[7])) == (case == "mixtral-swiglu")  # gated: w3
    assert not warned
    # the routing machinery is gone, and nothing data-dependent is left
    h = g2.op_histogram()
    for op in ("TopK", "ArgMax", "NonZero", "ScatterND", "ScatterElements", "GatherND", "Einsum"):
        assert op not in h, h
    assert not any(t.dynamic for t in g2.tensors.values())
    _check_same(path, g, g2)


@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_topk_pooling_is_not_fused(exporter, opset, tmp_path):
    path = _export(TopKPooling, _X, exporter, opset, tmp_path / "pool.onnx")
    g, g2, warned = _fuse(path)
    assert "MoE" not in g2.op_histogram() and "TopK" in g2.op_histogram()
    assert not warned  # a single MLP beside a TopK does not look like experts
    _check_same(path, g, g2)


@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_capacity_dropping_is_not_fused_and_warns(exporter, opset, tmp_path):
    """With a capacity below the token count tokens are dropped: MoE-like, not an MoE."""
    path = _export(lambda: GShardEinsum(capacity=2), _X, exporter, opset, tmp_path / "cap.onnx")
    g, g2, warned = _fuse(path)
    assert "MoE" not in g2.op_histogram()
    assert warned and "ArgMax" in warned[0] and "not fused" in warned[0] and "capacity of 2" in warned[0]
    _check_same(path, g, g2)


@pytest.mark.parametrize("name", ["m3vit-tiny", "m3vit-tiny-sparse"])
def test_bundled_m3vit(name):
    pytest.importorskip("models.registry")
    from hwgen.frontend import bundled_models
    from models.registry import get_spec

    if name not in bundled_models():
        pytest.skip(f"{name} is not bundled yet")
    cfg = get_spec(name).kwargs
    g, g2, warned = _fuse(name)
    moes = [n for n in g2.nodes if n.op == "MoE"]
    assert len(moes) == len(range(1, cfg["depth"], 2)), (g2.op_histogram(), warned)
    for n in moes:
        assert (n.attrs["num_experts"], n.attrs["top_k"]) == (cfg["experts"], cfg["top_k"])
        assert n.attrs["activation"] == "gelu" and n.attrs["normalization"] == "softmax_topk_renorm"
        assert g2.tensors[n.inputs[1]].data is None  # the gate is chosen per task at run time
    assert not any(t.dynamic for t in g2.tensors.values())
    _check_same(bundled_models()[name], g, g2, n=2)


# --- the op itself, against torch ---------------------------------------------------------
def _torch_moe(x, gw, gb, w1, b1, w2, b2, k, act, norm, w3=None, b3=None):
    x, gw, gb, w1, b1, w2, b2 = (torch.from_numpy(a) for a in (x, gw, gb, w1, b1, w2, b2))
    logits = x @ gw + gb
    if norm == "topk_then_softmax":
        v, i = torch.topk(logits, k)
        w = torch.softmax(v, -1)
    elif norm == "sigmoid_then_topk":
        w, i = torch.topk(torch.sigmoid(logits), k)
    elif norm == "topk":
        w, i = torch.topk(logits, k)
    else:
        w, i = torch.topk(torch.softmax(logits, -1), k)
        if norm == "softmax_topk_renorm":
            w = w / w.sum(-1, keepdim=True)
    fn = {"gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "relu": F.relu, "silu": F.silu, "identity": lambda t: t}[act]
    y = torch.zeros(x.shape[:-1] + (w2.shape[-1],))
    for e in range(w1.shape[0]):
        h = fn(x @ w1[e] + b1[e])
        if w3 is not None:  # gated (GLU) expert
            h = h * (x @ torch.from_numpy(w3[e]) + torch.from_numpy(b3[e]))
        ye = h @ w2[e] + b2[e]
        y += ((i == e).to(x.dtype) * w).sum(-1, keepdim=True) * ye
    return y.numpy()


@pytest.mark.parametrize("norm", ["softmax_then_topk", "softmax_topk_renorm", "topk_then_softmax", "topk", "sigmoid_then_topk"])
@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "relu", "silu", "identity"])
def test_moe_op_matches_torch(norm, act):
    rng = np.random.default_rng(3)
    e, h, d_out, k = 5, 12, 7, 2 if norm != "topk" else 3
    arrs = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4, D), (D, e), (e,), (e, D, h), (e, h), (e, h, d_out), (e, d_out)]]
    node = Node("MoE", "moe", [f"i{j}" for j in range(7)], ["y"], dict(num_experts=e, top_k=k, activation=act, normalization=norm), "hwgen")
    got = run_node(node, arrs, 17)[0]
    assert got.shape == (3, 4, d_out) and got.dtype == np.float32
    np.testing.assert_allclose(got, _torch_moe(*arrs, k, act, norm), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ["silu", "gelu", "identity"])
def test_gated_moe_op_matches_torch(act):
    """Gated experts (inputs 7, 8: w3, b3): (act(x W1 + b1) * (x W3 + b3)) W2 + b2."""
    rng = np.random.default_rng(5)
    e, h, d_out, k = 4, 10, 6, 2
    shapes = [(2, 5, D), (D, e), (e,), (e, D, h), (e, h), (e, h, d_out), (e, d_out), (e, D, h), (e, h)]
    arrs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    node = Node("MoE", "moe", [f"i{j}" for j in range(9)], ["y"], dict(num_experts=e, top_k=k, activation=act, normalization="topk_then_softmax"), "hwgen")
    got = run_node(node, arrs, 17)[0]
    want = _torch_moe(*arrs[:7], k, act, "topk_then_softmax", w3=arrs[7], b3=arrs[8])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    plain = run_node(Node("MoE", "moe", node.inputs[:7], ["y"], node.attrs, "hwgen"), arrs[:7], 17)[0]
    assert not np.allclose(plain, want, rtol=1e-2)  # the gate projection matters
    with pytest.raises(hwgen.errors.UnsupportedOpError, match="w3"):
        run_node(node, arrs[:7] + [arrs[7][:, :, :3], arrs[8]], 17)


def test_moe_op_optional_biases_and_ties():
    """Absent biases are zero; equal gate scores pick the lower expert index (TopK's rule)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, D)).astype(np.float32)
    gw = np.zeros((D, 3), np.float32)  # all logits equal: experts 0 and 1 win
    w1 = rng.standard_normal((3, D, 8)).astype(np.float32)
    w2 = rng.standard_normal((3, 8, D)).astype(np.float32)
    node = Node("MoE", "moe", ["x", "gw", "", "w1", "", "w2", ""], ["y"], dict(num_experts=3, top_k=2, activation="relu", normalization="softmax_topk_renorm"), "hwgen")
    got = run_node(node, [x, gw, None, w1, None, w2, None], 17)[0]
    xt, w1t, w2t = torch.from_numpy(x), torch.from_numpy(w1), torch.from_numpy(w2)
    want = sum(0.5 * (torch.relu(xt @ w1t[e]) @ w2t[e]) for e in (0, 1)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
