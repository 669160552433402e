"""Plain Vision Transformer (pre-norm), the baseline the other models are compared with.

image ``[B, C, H, W]`` -> patch embedding (Conv, kernel = stride = patch) -> prepend the
class token -> add learned position embeddings -> ``depth`` blocks of
``x + Attention(LN(x))``, ``x + MLP(LN(x))`` -> LN -> linear head on the class token ->
``logits [B, classes]``.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Attention, Mlp, PatchEmbed, trunc_init

__all__ = ["ViT", "Block", "ClassTokenClassifier"]


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def macs(self, n: int) -> int:
        return self.attn.macs(n) + self.mlp.macs(n)


class ClassTokenClassifier(nn.Module):
    """What a single-task ViT-shaped classifier does with its parts: embed, prepend the
    class token, add positions, run the blocks, classify the class token. Subclasses set
    ``embed``, ``cls``, ``pos``, ``blocks``, ``norm``, ``head``, ``img``, ``in_ch``,
    ``tokens``, ``dim`` and ``classes``."""

    def forward(self, image):
        x = self.embed(image)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])

    def example_inputs(self, batch: int = 1):
        return (torch.zeros(batch, self.in_ch, *self.img),)

    def macs(self) -> int:
        return self.embed.macs() + sum(b.macs(self.tokens) for b in self.blocks) + self.dim * self.classes


class ViT(ClassTokenClassifier):
    input_names = ("image",)
    output_names = ("logits",)

    def __init__(self, img=(8, 8), in_ch=1, patch=2, dim=64, depth=2, heads=4, mlp_hidden=128, classes=10):
        super().__init__()
        self.img, self.in_ch = tuple(img), in_ch
        self.embed = PatchEmbed(in_ch, dim, patch, self.img)
        self.tokens = self.embed.num_patches + 1
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, self.tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        trunc_init(self)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.dim, self.classes = dim, classes
