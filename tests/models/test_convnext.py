"""The ConvNeXt-style model (convnext-atto) used to try the optical4f mapper."""

from __future__ import annotations

import torch

from models.convnext import ConvNeXt
from models.registry import build_model, get_spec


def test_macs_match_the_layers_torch_runs():
    m = ConvNeXt(img=(64, 64), classes=10).eval()
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
            macs.append(out.numel() * k)
        elif isinstance(mod, torch.nn.Linear):
            macs.append(out.numel() * mod.in_features)

    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        y = m(*m.example_inputs(1))
    assert y.shape == (1, 10)
    assert m.macs() == sum(macs)


def test_registry_entry_has_timm_atto_shapes():
    spec = get_spec("convnext-atto")
    assert spec.family == "convnext" and not spec.trained
    m = build_model("convnext-atto")
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 40
    shapes = {tuple(c.weight.shape) for c in convs}
    assert (1280, 320, 1, 1) in shapes and (320, 1280, 1, 1) in shapes  # pointwise up to 320x1280
    assert (40, 3, 4, 4) in shapes and (320, 160, 2, 2) in shapes      # 4x4 stem, 2x2 downsampling
    assert all(c.groups == c.in_channels for c in convs if c.kernel_size == (7, 7))  # depthwise 7x7
