"""Building blocks shared by the reference models.

Everything here is written so that both torch ONNX exporters emit plain standard ops
that hwgen's frontend recognises:

* attention is hand-written (``MatMul -> Mul(scale) -> Softmax -> MatMul``), never
  ``scaled_dot_product_attention`` (which becomes one ``Attention`` op at opset 23);
* LayerNorm is ``nn.LayerNorm`` (``LayerNormalization`` at opset >= 17);
* GELU is the exact (erf) GELU (``Gelu`` at opset >= 20, ``Erf`` pattern below).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Attention", "Mlp", "PatchEmbed", "count_params"]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: ``Conv(kernel=stride=patch)`` then flatten.

    ``[B, C, H, W] -> [B, (H/p)*(W/p), dim]``."""

    def __init__(self, in_ch: int, dim: int, patch: int, img: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)
        self.grid = (img[0] // patch, img[1] // patch)
        self.num_patches = self.grid[0] * self.grid[1]
        self.in_ch, self.dim, self.patch = in_ch, dim, patch

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)

    def macs(self) -> int:
        return self.num_patches * self.in_ch * self.patch * self.patch * self.dim


class Attention(nn.Module):
    """Multi-head self-attention with linear Q/K/V/output projections (one fused QKV)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0
        self.heads, self.dim = heads, dim
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        qkv = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        return self.proj(attend(q, k, v, self.scale).transpose(1, 2).reshape(b, n, d))

    def macs(self, n: int) -> int:
        d = self.dim
        return n * d * 3 * d + 2 * n * n * d + n * d * d


def attend(q, k, v, scale: float):
    """softmax(q k^T * scale) v over the last two axes; q, k, v: [B, H, N, dh]."""
    a = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1)
    return torch.matmul(a, v)


class Mlp(nn.Module):
    """Linear -> GELU (exact) -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.dim, self.hidden = dim, hidden

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def macs(self, n: int) -> int:
        return 2 * n * self.dim * self.hidden


def trunc_init(module: nn.Module, std: float = 0.02) -> None:
    """ViT-style init: truncated-normal linear/conv weights, zero bias, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


_ = math  # (kept for users of the module who compute scales)
