"""ConvShareViT-style Vision Transformer: every linear layer of attention (Q/K/V and the
output projection) and of the MLP is a depthwise convolution whose kernels are shared
across input channels (after Ibadulla, Chen & Reyes-Aldasoro, "ConvShareViT", arXiv
2504.11517 / IEEE TNNLS 2026).

How the layers are laid out here
--------------------------------
A token's embedding of ``D = C * s * s`` values is held as ``C`` 2-D tiles of ``s x s``
(``D = 64`` -> one 8x8 tile). A *shared convolution* with ``F`` filters of ``k x k``
applies the same filter bank to **every input channel of every token** (the tokens and
the tile channels are the conv's "input channels"; the kernel is shared across all of
them, as one Fourier-plane filter of a 4f correlator is applied to every image tiled
on the input SLM)::

    [B, N, C*s*s] -> reshape [B*N*C, 1, s, s] -> Conv(weight [F, 1, k, k], pad)
                  -> [B*N*C, F, s', s'] -> (C > 1: sum over the C channels, done in
                     electronics in the 4f system) -> + bias[F] -> [B, N, F*s'*s']

In ONNX, for C = 1: one standard ``Conv`` (one input channel, weight ``[F, 1, k, k]``)
between two ``Reshape``\\ s; for C > 1: ``Conv(group=C)`` on ``[B*N, C, s, s]`` whose
weight ``[C*F, 1, k, k]`` is the shared ``[F, 1, k, k]`` tiled C times (``Tile``/``Expand``
of one initializer, or a folded constant), then ``Reshape`` and ``ReduceSum`` over C.

* **valid** padding (``pad = 0``), kernel = the whole tile (``k = s``): each filter
  gives one number per token, ``<tile, kernel_f>`` — the conv computes exactly a linear
  layer ``D -> F`` applied to each token with the same weights, so the model keeps the
  transformer's token semantics (the paper finds valid-padded variants learn attention
  like a ViT). Outputs of ``F = s'^2`` values are read as an ``s' x s'`` tile by the
  next layer (MLP hidden 256 -> a 16x16 tile).
* **same** padding (``pad = k // 2``, small ``k``): each filter maps a tile to a tile of
  the same size, a local (Toeplitz) operator on the embedding; Q, K and V are three
  filters (3 tiles), the MLP's hidden layer ``hidden / D`` filters, its output one
  filter summed over the hidden channels. Far fewer weights; the paper finds such
  variants behave like CNNs rather than transformers.

Attention itself (``softmax(QK^T/sqrt(d)) V``), LayerNorm, GELU, the patch embedding
(Conv, kernel = stride = patch) and the classifier head (Linear) are as in the ViT.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import PatchEmbed, attend, trunc_init
from .vit import ClassTokenClassifier

__all__ = ["ConvShareViT", "SharedConv"]


class SharedConv(nn.Module):
    """Depthwise conv with one filter bank shared across all input channels (see module doc)."""

    def __init__(self, in_ch: int, tile: int, filters: int, kernel: int, padding: str):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', not {padding!r}")
        if padding == "same" and kernel % 2 == 0:
            raise ValueError("same padding needs an odd kernel")
        self.in_ch, self.tile, self.filters, self.kernel, self.padding = in_ch, tile, filters, kernel, padding
        self.pad = kernel // 2 if padding == "same" else 0
        self.out_tile = tile if padding == "same" else tile - kernel + 1
        fan_in = kernel * kernel * in_ch
        self.weight = nn.Parameter(torch.randn(filters, 1, kernel, kernel) / math.sqrt(fan_in))
        self.bias = nn.Parameter(torch.zeros(filters))
        self.in_features = in_ch * tile * tile
        self.out_features = filters * self.out_tile * self.out_tile

    def forward(self, x):
        lead = x.shape[:-1]
        s, c, f = self.tile, self.in_ch, self.filters
        if c == 1:
            y = F.conv2d(x.reshape(-1, 1, s, s), self.weight, self.bias, padding=self.pad)
        else:
            # depthwise over the C channels (group = C), the same F kernels for every channel,
            # then the channel sum (electronics in a 4f system)
            y = F.conv2d(x.reshape(-1, c, s, s), self.weight.repeat(c, 1, 1, 1), None, padding=self.pad, groups=c)
            y = y.reshape(-1, c, f, self.out_tile, self.out_tile).sum(dim=1) + self.bias.view(-1, 1, 1)
        return y.reshape(*lead, self.out_features)

    def macs(self, n: int) -> int:
        return n * self.in_ch * self.filters * self.out_tile**2 * self.kernel**2


def _shared_linear(in_features: int, out_features: int, padding: str, kernel: int, tile: int) -> SharedConv:
    """A SharedConv standing in for Linear(in_features, out_features).

    valid: kernel = the whole (square) input tile, one filter per output feature.
    same: tiles of ``tile x tile``; ``in_features / tile^2`` channels in,
    ``out_features / tile^2`` filters."""
    if padding == "valid":
        s = math.isqrt(in_features)
        if s * s != in_features:
            raise ValueError(f"valid ConvShare layer needs a square input size, not {in_features}")
        return SharedConv(1, s, out_features, s, "valid")
    a = tile * tile
    if in_features % a or out_features % a:
        raise ValueError(f"same ConvShare layer {in_features}->{out_features}: not multiples of the {tile}x{tile} tile")
    return SharedConv(in_features // a, tile, out_features // a, kernel, "same")


class ConvShareAttention(nn.Module):
    def __init__(self, dim, heads, padding, kernel, tile):
        super().__init__()
        self.heads, self.dim, self.scale = heads, dim, (dim // heads) ** -0.5
        self.qkv = _shared_linear(dim, 3 * dim, padding, kernel, tile)
        self.proj = _shared_linear(dim, dim, padding, kernel, tile)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        qkv = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        y = attend(qkv[0], qkv[1], qkv[2], self.scale)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))

    def macs(self, n):
        return self.qkv.macs(n) + self.proj.macs(n) + 2 * n * n * self.dim


class ConvShareBlock(nn.Module):
    def __init__(self, dim, heads, mlp_hidden, padding, kernel, tile):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), ConvShareAttention(dim, heads, padding, kernel, tile)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = _shared_linear(dim, mlp_hidden, padding, kernel, tile)
        self.act = nn.GELU()
        self.fc2 = _shared_linear(mlp_hidden, dim, padding, kernel, tile)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def macs(self, n):
        return self.attn.macs(n) + self.fc1.macs(n) + self.fc2.macs(n)


class ConvShareViT(ClassTokenClassifier):
    input_names = ("image",)
    output_names = ("logits",)

    def __init__(self, img=(8, 8), in_ch=1, patch=2, dim=64, depth=2, heads=4, mlp_hidden=256, classes=10, padding="same", kernel=3):
        super().__init__()
        self.img, self.in_ch, self.padding = tuple(img), in_ch, padding
        self.embed = PatchEmbed(in_ch, dim, patch, self.img)
        self.tokens = self.embed.num_patches + 1
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, self.tokens, dim))
        tile = math.isqrt(dim)
        if tile * tile != dim:
            raise ValueError(f"ConvShareViT needs a square embedding size (one tile), not {dim}")
        self.blocks = nn.ModuleList(ConvShareBlock(dim, heads, mlp_hidden, padding, kernel, tile) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        trunc_init(self)  # Linear/Conv2d/LayerNorm only; SharedConv keeps its fan-in init
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.dim, self.classes = dim, classes
