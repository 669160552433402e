"""Small MoE layers written in plain torch the ways people write them (not hwgen's
models/): stacked expert weights applied with einsum or a batched matmul to every token
and a gate scattered from the top-k; softmax-then-top-k and top-k-then-softmax with and
without renormalisation; routers that add a task or noise embedding; gated experts
(SwiGLU / GeGLU as in Mixtral, Qwen-MoE and DeepSeek-MoE, with shared experts); top-k by
sorting; GShard's top-2 one-hot dispatch and combine tensors; DeepSeek's sigmoid router with a routed scaling factor; and routings that are not
hwgen.MoE: expert choice, token-dropping capacity limits, DeepSeek-V3's selection bias,
renormalised sigmoid weights and group-limited routing.

Each factory returns ``(module, example_inputs, input_names)``; tiny dimensions keep every
export under a few seconds."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

D, TOKENS = 16, (2, 5)
ACTS = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}


def _x():
    return torch.randn(*TOKENS, D)


def _route(logits, k, norm):
    """-> (weights [.., k], experts [.., k]) in the named style ("sort": softmax, then
    the first k of a descending sort)."""
    if norm == "sort":
        v, i = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
        return v[..., :k], i[..., :k]
    if norm == "topk_then_softmax":
        v, i = torch.topk(logits, k, dim=-1)
        return torch.softmax(v, dim=-1), i
    v, i = torch.topk(torch.softmax(logits, dim=-1), k, dim=-1)
    if norm == "softmax_topk_renorm":
        v = v / v.sum(dim=-1, keepdim=True)
    return v, i


class StackedEinsum(nn.Module):
    """Experts' weights stacked [E, D, H] and applied with einsum to every token; the
    gate is the top-k weights scattered into zeros; the sum runs over the expert axis.
    ``gated``: act(x W1) * (x W3) then W2 (GeGLU with gelu, SwiGLU with silu)."""

    def __init__(self, norm="softmax_then_topk", act="gelu", gated=False, e=5, h=12, k=2, bias=True, combine="einsum"):
        super().__init__()
        self.norm, self.act, self.gated, self.k, self.combine = norm, act, gated, k, combine
        self.router = nn.Linear(D, e, bias=bias)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w3 = nn.Parameter(torch.randn(e, D, h) * 0.3) if gated else None
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)
        self.b1 = nn.Parameter(torch.randn(e, h) * 0.1) if bias else None
        self.b2 = nn.Parameter(torch.randn(e, D) * 0.1) if bias else None

    def forward(self, x):
        logits = self.router(x)
        v, i = _route(logits, self.k, self.norm)
        gate = torch.zeros_like(logits).scatter(-1, i, v)
        h = torch.einsum("bnd,edh->bneh", x, self.w1)
        if self.b1 is not None:
            h = h + self.b1
        h = ACTS[self.act](h)
        if self.gated:
            h = h * torch.einsum("bnd,edh->bneh", x, self.w3)
        y = torch.einsum("bneh,ehd->bned", h, self.w2)
        if self.b2 is not None:
            y = y + self.b2
        if self.combine == "einsum":
            return torch.einsum("bne,bned->bnd", gate, y)
        return (gate.unsqueeze(-1) * y).sum(dim=-2)


class BatchedMatmul(nn.Module):
    """Stacked weights applied with a batched matmul ``x[:, None] @ W1`` ([B, E, N, H]),
    top-k then softmax scattered into the gate, expert axis summed."""

    def __init__(self, e=4, h=10, k=2):
        super().__init__()
        self.k, self.router = k, nn.Linear(D, e, bias=False)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)

    def forward(self, x):
        logits = self.router(x)
        v, i = _route(logits, self.k, "topk_then_softmax")
        gate = torch.zeros_like(logits).scatter(-1, i, v)  # [B, N, E]
        y = torch.matmul(F.relu(torch.matmul(x.unsqueeze(1), self.w1)), self.w2)  # [B, E, N, D]
        return (y * gate.permute(0, 2, 1).unsqueeze(-1)).sum(dim=1)


class RouterEmbedding(nn.Module):
    """The router reads ``x + embedding``: a task embedding chosen by a ``task`` input, or
    a learned noise/bias vector; the experts read ``x``."""

    def __init__(self, kind="task", e=4, h=12, k=2, tasks=3):
        super().__init__()
        self.kind, self.k = kind, k
        self.emb = nn.Parameter(torch.randn(tasks, D) * 0.8) if kind == "task" else nn.Parameter(torch.randn(D) * 0.8)
        self.router = nn.Linear(D, e)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)

    def forward(self, x, task=None):
        e = self.emb[task] if self.kind == "task" else self.emb
        logits = self.router(x + e)
        v, i = _route(logits, self.k, "softmax_topk_renorm")
        gate = torch.zeros_like(logits).scatter(-1, i, v)
        h = F.gelu(torch.einsum("bnd,edh->bneh", x, self.w1))
        return torch.einsum("bne,bned->bnd", gate, torch.einsum("bneh,ehd->bned", h, self.w2))


class GLUExpert(nn.Module):
    """Mixtral's / Qwen's / DeepSeek's expert: down(act(gate(x)) * up(x))."""

    def __init__(self, h, act="silu"):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(D, h, bias=False), nn.Linear(D, h, bias=False)
        self.down_proj, self.act = nn.Linear(h, D, bias=False), act

    def forward(self, x):
        return self.down_proj(ACTS[self.act](self.gate_proj(x)) * self.up_proj(x))


class MixtralDenseGLU(nn.Module):
    """Mixtral's routing (top-k of the logits, softmax over the k), SwiGLU experts as
    modules, every expert on every token, gate scattered into zeros."""

    def __init__(self, e=4, h=12, k=2, act="silu"):
        super().__init__()
        self.k, self.gate = k, nn.Linear(D, e, bias=False)
        self.experts = nn.ModuleList(GLUExpert(h, act) for _ in range(e))

    def forward(self, x):
        logits = self.gate(x)
        v, i = _route(logits, self.k, "topk_then_softmax")
        w = torch.zeros_like(logits).scatter(-1, i, v)
        return sum(w[..., j : j + 1] * ex(x) for j, ex in enumerate(self.experts))


class SparseGLU(nn.Module):
    """Qwen-MoE / DeepSeek-MoE style sparse block: softmax, top-k (renormalised when
    ``norm_topk_prob``), one-hot expert mask, torch.where, index_add_; SwiGLU experts;
    ``shared``: an always-on shared expert added, gated by a sigmoid as in Qwen2-MoE
    (``"sigmoid"``) or plain as in DeepSeek-MoE (``"plain"``)."""

    def __init__(self, e=4, h=8, k=2, norm_topk_prob=False, shared=None, act="silu"):
        super().__init__()
        self.e, self.k, self.norm_topk_prob, self.shared_kind = e, k, norm_topk_prob, shared
        self.gate = nn.Linear(D, e, bias=False)
        self.experts = nn.ModuleList(GLUExpert(h, act) for _ in range(e))
        self.shared = GLUExpert(2 * h, act) if shared else None
        self.shared_gate = nn.Linear(D, 1, bias=False) if shared == "sigmoid" else None

    def forward(self, x):
        b, n, d = x.shape
        xt = x.view(-1, d)
        w = F.softmax(self.gate(xt), dim=1, dtype=torch.float)
        w, sel = torch.topk(w, self.k, dim=-1)
        if self.norm_topk_prob:
            w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros((b * n, d), dtype=x.dtype)
        mask = F.one_hot(sel, num_classes=self.e).permute(2, 1, 0)
        for e in range(self.e):
            slot, rows = torch.where(mask[e])
            y = self.experts[e](xt[rows]) * w[rows, slot, None]
            out.index_add_(0, rows, y.to(x.dtype))
        if self.shared is not None:
            s = self.shared(xt)
            out = out + (torch.sigmoid(self.shared_gate(xt)) * s if self.shared_gate is not None else s)
        return out.view(b, n, d)


class ExpertChoice(nn.Module):
    """Expert-choice routing (Zhou et al. 2022): each expert takes its top-C tokens by
    score (TopK over the token axis); a token may get 0..E experts. Not hwgen.MoE."""

    def __init__(self, e=3, h=8, capacity=4):
        super().__init__()
        self.c, self.router = capacity, nn.Linear(D, e, bias=False)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)

    def forward(self, x):
        xt = x.reshape(-1, D)
        s = torch.softmax(self.router(xt), dim=-1)  # [T, E]
        g, idx = torch.topk(s.t(), self.c, dim=-1)  # [E, C]: each expert picks C tokens
        xe = xt[idx]  # [E, C, D]
        ye = torch.einsum("ech,ehd->ecd", F.gelu(torch.einsum("ecd,edh->ech", xe, self.w1)), self.w2)
        rows = idx.reshape(-1, 1).expand(-1, D)
        out = torch.zeros_like(xt).scatter_add(0, rows, (g.unsqueeze(-1) * ye).reshape(-1, D))
        return out.reshape(x.shape)


class CapacityDropping(nn.Module):
    """Switch-style top-1 with an expert capacity: a token's position in its expert's
    queue (cumsum of the one-hot mask over tokens) must be below ``capacity``, else it is
    dropped (output 0). Capacity below the token count: not hwgen.MoE."""

    def __init__(self, e=4, h=8, capacity=2):
        super().__init__()
        self.e, self.c, self.router = e, capacity, nn.Linear(D, e, bias=False)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)

    def forward(self, x):
        xt = x.reshape(-1, D)
        p = torch.softmax(self.router(xt), dim=-1)
        pmax, idx = p.max(dim=-1)
        mask = F.one_hot(idx, self.e).to(x.dtype)
        keep = mask * (torch.cumsum(mask, dim=0) <= self.c).to(x.dtype)  # position in queue
        y = torch.einsum("td,edh->teh", xt, self.w1)
        y = torch.einsum("teh,ehd->ted", F.relu(y), self.w2)
        return (torch.einsum("te,ted->td", keep, y) * pmax.unsqueeze(-1)).reshape(x.shape)


class FFN(nn.Module):
    """A plain expert: fc2(act(fc1(x))) with biases."""

    def __init__(self, h, act="gelu"):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(D, h), nn.Linear(h, D), act

    def forward(self, x):
        return self.fc2(ACTS[self.act](self.fc1(x)))


class GShardDispatch(nn.Module):
    """GShard's top-2 (two ArgMax, the second with the first masked out, renormalised)
    with one-hot dispatch and combine tensors [T, E, C]: a token's slot in its expert's
    buffer from a cumsum over tokens, ``einsum("tec,td->ecd")`` in, ``einsum("tec,ecd->td")``
    out. The capacity C holds every token, so none is dropped: hwgen.MoE."""

    def __init__(self, e=4, h=12):
        super().__init__()
        self.e = e
        self.wg = nn.Parameter(torch.randn(D, e) * 0.5)
        self.w1 = nn.Parameter(torch.randn(e, D, h) * 0.3)
        self.w2 = nn.Parameter(torch.randn(e, h, D) * 0.3)

    def forward(self, x):
        xt = x.reshape(-1, D)
        cap = 2 * xt.shape[0]
        gates = torch.softmax(torch.einsum("td,de->te", xt, self.wg), dim=-1)
        m1 = F.one_hot(torch.argmax(gates, dim=-1), self.e).to(x.dtype)
        m2 = F.one_hot(torch.argmax(gates * (1 - m1), dim=-1), self.e).to(x.dtype)
        loc1 = ((torch.cumsum(m1, 0) - 1) * m1).sum(-1).long()
        loc2 = ((torch.cumsum(m2, 0) - 1 + m1.sum(0, keepdim=True)) * m2).sum(-1).long()
        g1, g2 = (gates * m1).sum(-1), (gates * m2).sum(-1)
        g1, g2 = g1 / (g1 + g2), g2 / (g1 + g2)
        combine = (g1[:, None, None] * m1[:, :, None] * F.one_hot(loc1, cap)[:, None, :].to(x.dtype)
                   + g2[:, None, None] * m2[:, :, None] * F.one_hot(loc2, cap)[:, None, :].to(x.dtype))
        xin = torch.einsum("tec,td->ecd", (combine > 0).to(x.dtype), xt)
        out = torch.einsum("ech,ehd->ecd", F.relu(torch.einsum("ecd,edh->ech", xin, self.w1)), self.w2)
        return torch.einsum("tec,ecd->td", combine, out).reshape(x.shape)


class SigmoidRouter(nn.Module):
    """DeepSeek-style sigmoid router over plain experts (dense masks): the top-k of the
    sigmoid scores (plus a per-expert selection ``bias``, DeepSeek-V3's
    e_score_correction_bias, within the best of ``groups`` groups), weights gathered from
    the unbiased scores, optionally renormalised, times a routed scaling factor. Only the
    unbiased, ungrouped, unrenormalised router is hwgen.MoE (the factor goes into w2, b2)."""

    def __init__(self, e=6, k=2, h=8, bias=False, renorm=False, scale=2.5, groups=None):
        super().__init__()
        self.e, self.k, self.renorm, self.scale, self.groups = e, k, renorm, scale, groups
        self.weight = nn.Parameter(torch.randn(e, D) * 0.3)
        self.register_buffer("bias", torch.randn(e) * 0.5 if bias else None)
        self.experts = nn.ModuleList(FFN(h, "silu") for _ in range(e))

    def forward(self, x):
        xt = x.reshape(-1, D)
        s = torch.sigmoid(F.linear(xt, self.weight))
        choice = s + self.bias if self.bias is not None else s
        if self.groups:
            grouped = choice.view(-1, self.groups, self.e // self.groups)
            best = torch.topk(grouped.topk(2, dim=-1)[0].sum(-1), 1, dim=-1)[1]
            keep = torch.zeros(grouped.shape[:2]).scatter(1, best, 1.0).unsqueeze(-1).expand_as(grouped).reshape(-1, self.e)
            choice = choice.masked_fill(~keep.bool(), 0.0)
        idx = torch.topk(choice, self.k, dim=-1)[1]
        w = s.gather(1, idx)
        if self.renorm:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * self.scale
        out = sum((w * (idx == e)).sum(-1, keepdim=True) * ex(xt) for e, ex in enumerate(self.experts))
        return out.reshape(x.shape)


#: style id -> (factory, the fused hwgen.MoE's attributes, or None when no hwgen.MoE may
#: be formed and the words the rejection must name)
STYLES = {
    "einsum-scatter-softmax-topk": (lambda: StackedEinsum("softmax_then_topk"), dict(num_experts=5, top_k=2, normalization="softmax_then_topk", activation="gelu", gated=False)),
    "einsum-scatter-softmax-topk-renorm": (lambda: StackedEinsum("softmax_topk_renorm", act="relu", combine="sum"), dict(num_experts=5, top_k=2, normalization="softmax_topk_renorm", activation="relu", gated=False)),
    "einsum-scatter-topk-softmax": (lambda: StackedEinsum("topk_then_softmax", k=3, bias=False), dict(num_experts=5, top_k=3, normalization="topk_then_softmax", activation="gelu", gated=False)),
    "bmm-scatter": (BatchedMatmul, dict(num_experts=4, top_k=2, normalization="topk_then_softmax", activation="relu", gated=False)),
    "router-task-embedding": (lambda: RouterEmbedding("task"), dict(num_experts=4, top_k=2, normalization="softmax_topk_renorm", activation="gelu", gated=False)),
    "router-noise-embedding": (lambda: RouterEmbedding("noise"), dict(num_experts=4, top_k=2, normalization="softmax_topk_renorm", activation="gelu", gated=False)),
    "geglu-einsum": (lambda: StackedEinsum("softmax_topk_renorm", act="gelu", gated=True), dict(num_experts=5, top_k=2, normalization="softmax_topk_renorm", activation="gelu", gated=True)),
    "mixtral-swiglu-dense": (MixtralDenseGLU, dict(num_experts=4, top_k=2, normalization="topk_then_softmax", activation="silu", gated=True)),
    "qwen-swiglu-sparse-shared": (lambda: SparseGLU(shared="sigmoid"), dict(num_experts=4, top_k=2, normalization="softmax_then_topk", activation="silu", gated=True)),
    "qwen3-swiglu-sparse-renorm": (lambda: SparseGLU(norm_topk_prob=True), dict(num_experts=4, top_k=2, normalization="softmax_topk_renorm", activation="silu", gated=True)),
    "deepseek-swiglu-sparse-shared": (lambda: SparseGLU(e=6, k=3, shared="plain"), dict(num_experts=6, top_k=3, normalization="softmax_then_topk", activation="silu", gated=True)),
    "sort-topk": (lambda: StackedEinsum("sort", act="relu"), dict(num_experts=5, top_k=2, normalization="softmax_then_topk", activation="relu", gated=False)),
    "gshard-dispatch-combine": (GShardDispatch, dict(num_experts=4, top_k=2, normalization="softmax_topk_renorm", activation="relu", gated=False)),
    "deepseek-sigmoid-scaled": (SigmoidRouter, dict(num_experts=6, top_k=2, normalization="sigmoid_then_topk", activation="silu", gated=False)),
    "expert-choice": (ExpertChoice, None, ("expert-choice routing", "TopK over the token axis")),
    "capacity-dropping": (CapacityDropping, None, ("capacity-limited routing", "capacity of 2")),
    "deepseek-v3-selection-bias": (lambda: SigmoidRouter(bias=True, renorm=True), None, ("selection bias", "e_score_correction_bias")),
    "sigmoid-renorm": (lambda: SigmoidRouter(renorm=True), None, ("renormalised sigmoid weights", "Div")),
    "group-limited": (lambda: SigmoidRouter(bias=True, groups=2), None, ("group-limited routing", "n_group")),
}

#: styles checked with TorchScript only (the rest with both exporters), to save CI time:
#: refusals, whose reason does not depend on the exporter, GShard's top-2 dispatch
#: (test_fuse_moe.py has its top-1 form under dynamo) and the scaled sigmoid router (all
#: seen alike under dynamo at its default opset)
EXPORTERS_OF = {"deepseek-v3-selection-bias": ("torchscript",), "sigmoid-renorm": ("torchscript",),
                "group-limited": ("torchscript",), "gshard-dispatch-combine": ("torchscript",),
                "deepseek-sigmoid-scaled": ("torchscript",)}


def example_inputs(style: str):
    """(args, input names) of a style's module."""
    if style == "router-task-embedding":
        return (_x(), torch.tensor(1)), ["x", "task"]
    return (_x(),), ["x"]
