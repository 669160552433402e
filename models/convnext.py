"""A ConvNeXt-style CNN in plain torch (the shape of timm's ``convnext_atto``), for
trying the optical4f mapper on a model no one here wrote.

Layout (Liu et al., "A ConvNet for the 2020s", CVPR 2022; timm's ``convnext_atto``:
dims 40/80/160/320, depths 2/2/6/2)::

    stem        Conv 4x4 stride 4 (in_ch -> dims[0]), LayerNorm over channels
    stage i     (i > 0: LayerNorm, Conv 2x2 stride 2 dims[i-1] -> dims[i]) then depths[i] blocks
    block       depthwise Conv 7x7 (pad 3, one kernel per channel), LayerNorm over channels,
                pointwise Conv 1x1 dim -> 4 dim, GELU, pointwise Conv 1x1 4 dim -> dim,
                residual add
    head        global average pool, LayerNorm, Linear -> classes

The pointwise layers are 1x1 ``Conv`` nodes (timm writes them as Linear on channels-last
tensors; as 1x1 convs they reach the mapper as convolutions, which is the case the
mapper must recognise: the last stage's are 320 -> 1280 and 1280 -> 320). LayerNorm
over channels is ``permute -> nn.LayerNorm -> permute`` (``LayerNormalization``). No
layer scale or drop path (inference shapes and op types are what matter here);
random seeded weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvNeXt"]


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``[B, C, H, W]``."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Block(nn.Module):
    def __init__(self, dim: int, kernel: int = 7, expand: int = 4):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = _ChannelNorm(dim, eps=1e-6)
        self.pw1 = nn.Conv2d(dim, expand * dim, 1)
        self.pw2 = nn.Conv2d(expand * dim, dim, 1)

    def forward(self, x):
        return x + self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))


class ConvNeXt(nn.Module):
    input_names = ("image",)
    output_names = ("logits",)

    def __init__(self, img=(224, 224), in_ch=3, dims=(40, 80, 160, 320), depths=(2, 2, 6, 2), classes=1000,
                 kernel=7):
        super().__init__()
        self.img, self.in_ch, self.dims, self.depths, self.classes = tuple(img), in_ch, tuple(dims), tuple(depths), classes
        self.kernel = kernel
        self.stem = nn.Sequential(nn.Conv2d(in_ch, dims[0], 4, stride=4), _ChannelNorm(dims[0], eps=1e-6))
        self.downs = nn.ModuleList(
            nn.Sequential(_ChannelNorm(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
            for i in range(1, len(dims)))
        self.stages = nn.ModuleList(nn.Sequential(*(_Block(d, kernel) for _ in range(n))) for d, n in zip(dims, depths))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, image):
        x = self.stages[0](self.stem(image))
        for down, stage in zip(self.downs, self.stages[1:]):
            x = stage(down(x))
        return self.head(self.norm(x.mean(dim=(2, 3))))

    def example_inputs(self, batch: int = 1):
        return (torch.zeros(batch, self.in_ch, *self.img),)

    def macs(self) -> int:
        h, w = self.img[0] // 4, self.img[1] // 4
        total = h * w * self.in_ch * 16 * self.dims[0]
        for i, (d, n) in enumerate(zip(self.dims, self.depths)):
            if i:
                h, w = h // 2, w // 2
                total += h * w * self.dims[i - 1] * 4 * d
            total += n * h * w * (self.kernel ** 2 * d + 8 * d * d)
        return total + self.dims[-1] * self.classes
