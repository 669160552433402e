"""Small MoE layers written in plain torch the ways people write them (not hwgen's
models/): stacked expert weights applied with einsum or a batched matmul to every token
and a gate scattered from the top-k; softmax-then-top-k and top-k-then-softmax with and
without renormalisation; routers that add a task or noise embedding; gated experts
(SwiGLU / GeGLU as in Mixtral, Qwen-MoE and DeepSeek-MoE, with shared experts); and two
routings that are not hwgen.MoE: expert choice and token-dropping capacity limits.

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
    """-> (weights [.., k], experts [.., k]) in the named style."""
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
    "expert-choice": (ExpertChoice, None, ("expert-choice routing", "TopK over the token axis")),
    "capacity-dropping": (CapacityDropping, None, ("capacity-limited routing", "capacity of 2")),
}


def example_inputs(style: str):
    """(args, input names) of a style's module."""
    if style == "router-task-embedding":
        return (_x(), torch.tensor(1)), ["x", "task"]
    return (_x(),), ["x"]
