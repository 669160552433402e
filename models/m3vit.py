"""M3ViT-style multi-task Mixture-of-Experts Vision Transformer (the Edge-MoE workload).

Structure: patch embedding, class token, learned position embeddings, ``depth``
pre-norm blocks; block ``i`` uses a dense GELU MLP when ``i`` is even and a
Mixture-of-Experts MLP when ``i`` is odd (0-based: blocks 1, 3, 5, ...); final LN and one
linear head per task on the class token. Outputs ``logits_task0``, ``logits_task1``, ...
(every head is computed; the task input selects the MoE gates).

Task-conditioned gate
---------------------
Each MoE layer holds a stacked gate parameter ``gate [T, D, E]`` (no bias). The graph
input ``task`` (int64 scalar) picks one: ``g = gate[task]`` (ONNX ``Gather`` on axis 0
of an initializer with a graph input as index), so the routing of every token depends
on the task.

Gate normalisation (one definition, used by both formulations)
--------------------------------------------------------------
``p = softmax(x @ g)`` over **all** E experts; the ``k`` largest entries of ``p`` are
kept (``TopK``) and **renormalised** to sum to 1:
``w_e = p_e / sum_{j in topk} p_j`` for the selected experts, 0 for the others. The
selection mask is built from the TopK indices by comparison with ``arange(E)``
(``Equal`` -> ``Cast`` -> ``ReduceSum`` over the k axis). The MoE output for token t is
``sum_e w_{t,e} * expert_e(x_t)`` with ``expert_e(x) = GELU(x W1_e + b1_e) W2_e + b2_e``.

Two formulations of the same function (``MoE.mode``; switchable at any time, same
parameters):

* ``"dense"`` (dense masked): every expert runs on every token as batched MatMuls over a
  stacked ``[E, D, H]`` weight; results are multiplied by the masked weights ``w`` (zero
  for unselected experts) and summed over E. ONNX: ``TopK``, ``Equal``, ``Cast``,
  ``ReduceSum``, ``Div``, ``MatMul`` on ``[B,1,N,D] x [E,D,H]``, ``Mul``, ``ReduceSum``.
* ``"sparse"`` (sparse dispatch): tokens are flattened to ``[B*N, D]``; for each expert
  ``idx = nonzero(mask[:, e])``, the routed tokens are gathered, run through that expert
  alone, scaled by their weight and added back with ``index_add``. ONNX: ``NonZero``,
  ``Gather``/``GatherND``, ``ScatterND``/``ScatterElements`` (reduction add).

Both are equal up to float summation order (tested in ``tests/models``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention, Mlp, PatchEmbed, trunc_init

__all__ = ["M3ViT", "MoE", "MoEBlock", "DenseBlock"]

MOE_MODES = ("dense", "sparse")


class MoE(nn.Module):
    """Task-gated top-k Mixture of Experts (see the module docstring)."""

    def __init__(self, dim: int, hidden: int, experts: int, top_k: int, tasks: int, mode: str = "dense"):
        super().__init__()
        assert 1 <= top_k <= experts
        self.dim, self.hidden, self.experts, self.top_k, self.tasks = dim, hidden, experts, top_k, tasks
        self.mode = mode
        self.gate = nn.Parameter(torch.randn(tasks, dim, experts) * 0.02)
        self.w1 = nn.Parameter(torch.randn(experts, dim, hidden) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(experts, hidden))
        self.w2 = nn.Parameter(torch.randn(experts, hidden, dim) * 0.02)
        self.b2 = nn.Parameter(torch.zeros(experts, dim))
        self.last_probs = None  # softmax over experts of the last call (for the balance loss)

    def route(self, x, task):
        """-> (probs [.., E], weights [.., E] masked and renormalised, mask [.., E] 0/1)."""
        probs = torch.softmax(torch.matmul(x, self.gate[task]), dim=-1)
        _, top_i = torch.topk(probs, self.top_k, dim=-1)
        ar = torch.arange(self.experts, device=x.device)
        mask = (top_i.unsqueeze(-1) == ar).to(x.dtype).sum(dim=-2)
        w = probs * mask
        w = w / w.sum(dim=-1, keepdim=True)
        return probs, w, mask

    def forward(self, x, task):
        probs, w, mask = self.route(x, task)
        self.last_probs = probs
        if self.mode == "dense":
            return self._dense(x, w)
        if self.mode == "sparse":
            return self._sparse(x, w, mask)
        raise ValueError(f"MoE mode must be one of {MOE_MODES}, not {self.mode!r}")

    def _dense(self, x, w):
        # x [B, N, D] -> [B, 1, N, D] @ [E, D, H] -> [B, E, N, H]
        h = F.gelu(torch.matmul(x.unsqueeze(1), self.w1) + self.b1.unsqueeze(1))
        y = torch.matmul(h, self.w2) + self.b2.unsqueeze(1)  # [B, E, N, D]
        return (y * w.transpose(1, 2).unsqueeze(-1)).sum(dim=1)

    def _sparse(self, x, w, mask):
        shape = x.shape
        xt = x.reshape(-1, self.dim)
        wt = w.reshape(-1, self.experts)
        mt = mask.reshape(-1, self.experts)
        out = torch.zeros_like(xt)
        for e in range(self.experts):
            idx = torch.nonzero(mt[:, e] > 0).squeeze(1)
            tok = xt.index_select(0, idx)
            h = F.gelu(torch.matmul(tok, self.w1[e]) + self.b1[e])
            y = torch.matmul(h, self.w2[e]) + self.b2[e]
            y = y * wt.index_select(0, idx)[:, e : e + 1]
            out = out.index_add(0, idx, y)
        return out.reshape(shape)

    def macs(self, n: int, active_only: bool = True) -> int:
        """MACs for n tokens: gate + the k active experts per token (``active_only``) or
        all E experts (what the dense formulation actually computes)."""
        per_expert = 2 * self.dim * self.hidden
        return n * self.dim * self.experts + n * per_expert * (self.top_k if active_only else self.experts)


class DenseBlock(nn.Module):
    def __init__(self, dim, heads, mlp_hidden):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp_hidden)

    def forward(self, x, task):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def macs(self, n, active_only=True):
        return self.attn.macs(n) + self.mlp.macs(n)


class MoEBlock(nn.Module):
    def __init__(self, dim, heads, expert_hidden, experts, top_k, tasks, mode):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.moe = nn.LayerNorm(dim), MoE(dim, expert_hidden, experts, top_k, tasks, mode)

    def forward(self, x, task):
        x = x + self.attn(self.norm1(x))
        return x + self.moe(self.norm2(x), task)

    def macs(self, n, active_only=True):
        return self.attn.macs(n) + self.moe.macs(n, active_only)


class M3ViT(nn.Module):
    input_names = ("image", "task")

    def __init__(
        self,
        img=(8, 8),
        in_ch=1,
        patch=2,
        dim=32,
        depth=4,
        heads=2,
        mlp_hidden=128,
        experts=4,
        top_k=2,
        expert_hidden=64,
        task_classes=(10, 2),
        moe="dense",
    ):
        super().__init__()
        self.img, self.in_ch = tuple(img), in_ch
        self.embed = PatchEmbed(in_ch, dim, patch, self.img)
        self.tokens = self.embed.num_patches + 1
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, self.tokens, dim))
        tasks = len(task_classes)
        self.blocks = nn.ModuleList(
            MoEBlock(dim, heads, expert_hidden, experts, top_k, tasks, moe) if i % 2 == 1 else DenseBlock(dim, heads, mlp_hidden)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, c) for c in task_classes)
        trunc_init(self)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.dim, self.task_classes = dim, tuple(task_classes)
        self.output_names = tuple(f"logits_task{t}" for t in range(tasks))

    @property
    def moe_mode(self) -> str:
        return next(m.mode for m in self.modules() if isinstance(m, MoE))

    def set_moe_mode(self, mode: str) -> "M3ViT":
        if mode not in MOE_MODES:
            raise ValueError(f"MoE mode must be one of {MOE_MODES}, not {mode!r}")
        for m in self.modules():
            if isinstance(m, MoE):
                m.mode = mode
        return self

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, image, task):
        x = self.embed(image)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x, task)
        c = self.norm(x)[:, 0]
        return tuple(h(c) for h in self.heads)

    def example_inputs(self, batch: int = 1):
        return (torch.zeros(batch, self.in_ch, *self.img), torch.tensor(0, dtype=torch.int64))

    def macs(self, active_only: bool = True) -> int:
        return (
            self.embed.macs()
            + sum(b.macs(self.tokens, active_only) for b in self.blocks)
            + sum(self.dim * c for c in self.task_classes)
        )

    def balance_loss(self) -> torch.Tensor:
        """Switch-style importance loss: E * sum_e mean_prob_e^2 (1 when uniform)."""
        losses = []
        for m in self.moe_layers():
            p = m.last_probs.reshape(-1, m.experts).mean(0)
            losses.append(m.experts * (p * p).sum())
        return torch.stack(losses).mean()
