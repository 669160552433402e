"""The reference models by name: configurations, weights and ONNX files.

=========================  ==================================================================
name                        what
=========================  ==================================================================
``vit-tiny``                plain ViT on digits (baseline), trained
``m3vit-tiny``              M3ViT-style multi-task MoE ViT on digits (digit + parity), dense
                            masked MoE, trained
``m3vit-tiny-sparse``       the same weights, sparse-dispatch MoE (NonZero / scatter)
``convsharevit-tiny``       ConvShareViT, same padding (3x3 shared kernels), trained
``convsharevit-tiny-same``  alias of ``convsharevit-tiny``
``convsharevit-tiny-valid`` ConvShareViT, valid padding (kernel = whole 8x8 tile), trained
``m3vit-edge-moe``          exactly Edge-MoE's M3ViT (3x128x256, patch 16, 129 tokens, dim 192,
                            12 layers, 3 heads, 16 experts top-2, expert hidden 384, MLP 768,
                            2 tasks); random seeded weights, dense MoE
``m3vit-edge-moe-sparse``   the same, sparse-dispatch MoE
``convnext-atto``           ConvNeXt-style CNN in the shape of timm's convnext_atto (224x224,
                            dims 40/80/160/320, depths 2/2/6/2, 7x7 depthwise, 1x1 pointwise
                            up to 320x1280, 2x2 stride-2 downsampling); random seeded weights
``convsharevit-cifar100``   ConvShareViT for CIFAR-100 (32x32x3, patch 4, 65 tokens, dim 64,
                            depth 6, 4 heads, MLP 256, valid-padded shared kernels); the paper's
                            dataset, the other sizes are labelled assumptions
                            (``CONVSHAREVIT_PAPER``); random seeded weights, for cost
=========================  ==================================================================

Trained weights and ONNX files live in ``hwgen/data/models`` (package data):
``NAME.onnx``, ``NAME.weights.npz``, ``NAME.metrics.json``. ``resolve_model(name)`` is
the ``hwgen.model_sources`` entry point: shipped names -> their file; ``m3vit-edge-moe``
(too big to ship, ~70 MB) is exported once to ``$HWGEN_CACHE/models`` (default
``~/.cache/hwgen/models``) and that path returned; unknown names -> None.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelSpec", "SPECS", "get_spec", "build_model", "resolve_model", "data_dir", "cache_dir", "model_info"]

EDGE_MOE = dict(
    img=(128, 256), in_ch=3, patch=16, dim=192, depth=12, heads=3, mlp_hidden=768,
    experts=16, top_k=2, expert_hidden=384, task_classes=(19, 10),
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "vit" | "m3vit" | "convsharevit" | "convnext"
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    weights: str | None = None  # stem of the trained weights (None: random seeded init)
    moe: str | None = None  # MoE formulation for m3vit models
    shipped: bool = False  # NAME.onnx is in hwgen/data/models
    seed: int = 0
    epochs: int = 0  # training epochs (trained models)

    @property
    def trained(self) -> bool:
        return self.weights is not None


_TINY_M3 = dict(img=(8, 8), in_ch=1, patch=2, dim=48, depth=4, heads=4, mlp_hidden=128, experts=4, top_k=2,
                expert_hidden=96, task_classes=(10, 2))
_TINY_VIT = dict(img=(8, 8), in_ch=1, patch=2, dim=64, depth=2, heads=4, mlp_hidden=256, classes=10)

#: ConvShareViT in the configuration of its paper's experiments, as far as the stored
#: material tells it (abstracts of arXiv 2504.11517 / TNNLS 2026): CIFAR-100 (32x32x3,
#: 100 classes) and valid-padded shared depthwise kernels (the variant that learns
#: attention) are the paper's; patch 4, dim 64 (one 8x8 tile per token), depth 6,
#: 4 heads, MLP 256 (a 16x16 tile) are ASSUMPTIONS (the full text was not available).
CONVSHAREVIT_PAPER = dict(img=(32, 32), in_ch=3, patch=4, dim=64, depth=6, heads=4, mlp_hidden=256, classes=100,
                          padding="valid")
CONVSHAREVIT_PAPER_SOURCES = {
    "img, in_ch, classes": "paper (CIFAR-100; sciencestack.ai summary of arXiv 2504.11517)",
    "padding": "paper abstract: valid-padded shared convolutions learn attention",
    "patch, dim, depth, heads, mlp_hidden": "assumption: not in the stored material (full text unavailable)",
}

SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("vit-tiny", "vit", _TINY_VIT, "plain ViT on digits, the baseline (patch 2, dim 64, 2 layers, 4 heads)",
              weights="vit-tiny", shipped=True, epochs=100),
    ModelSpec("m3vit-tiny", "m3vit", dict(_TINY_M3, moe="dense"),
              "M3ViT multi-task MoE ViT on digits: task 0 digit, task 1 parity; dim 48, 4 layers, 2 MoE (4 experts, top-2, "
              "gate per task); dense masked MoE", weights="m3vit-tiny", moe="dense", shipped=True, epochs=100),
    ModelSpec("m3vit-tiny-sparse", "m3vit", dict(_TINY_M3, moe="sparse"),
              "m3vit-tiny's weights, sparse-dispatch MoE (NonZero / Gather / ScatterND)", weights="m3vit-tiny",
              moe="sparse", shipped=True, epochs=100),
    ModelSpec("convsharevit-tiny", "convsharevit", dict(_TINY_VIT, padding="same", kernel=3),
              "ConvShareViT on digits, same padding: Q/K/V/out/MLP as 3x3 kernels shared across channels",
              weights="convsharevit-tiny", shipped=True, epochs=100),
    ModelSpec("convsharevit-tiny-same", "convsharevit", dict(_TINY_VIT, padding="same", kernel=3),
              "alias of convsharevit-tiny", weights="convsharevit-tiny", epochs=100),
    ModelSpec("convsharevit-tiny-valid", "convsharevit", dict(_TINY_VIT, padding="valid"),
              "ConvShareViT on digits, valid padding: kernels cover the whole 8x8 token tile",
              weights="convsharevit-tiny-valid", shipped=True, epochs=100),
    ModelSpec("m3vit-edge-moe", "m3vit", dict(EDGE_MOE, moe="dense"),
              "Edge-MoE's M3ViT: 3x128x256, patch 16, dim 192, 12 layers, 3 heads, 16 experts top-2; random "
              "seeded weights, for cost/cycle reports; dense MoE", moe="dense"),
    ModelSpec("m3vit-edge-moe-sparse", "m3vit", dict(EDGE_MOE, moe="sparse"),
              "m3vit-edge-moe with sparse-dispatch MoE", moe="sparse"),
    ModelSpec("convnext-atto", "convnext", dict(img=(224, 224), in_ch=3, dims=(40, 80, 160, 320), depths=(2, 2, 6, 2),
                                                classes=1000),
              "ConvNeXt-style CNN shaped like timm's convnext_atto (4x4/4 stem, 7x7 depthwise, 1x1 pointwise up to "
              "320x1280, 2x2/2 downsampling); random seeded weights, for the optical4f mapper"),
    ModelSpec("convsharevit-cifar100", "convsharevit", CONVSHAREVIT_PAPER,
              "ConvShareViT in the paper's experimental setting (CIFAR-100, valid-padded shared kernels; patch 4, "
              "dim 64, depth 6, 4 heads, MLP 256 assumed); random seeded weights, for cost"),
]}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(SPECS)}") from None


def data_dir() -> Path:
    """``hwgen/data/models`` (where the shipped files live), found without importing hwgen."""
    import importlib.util

    spec = importlib.util.find_spec("hwgen")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "data" / "models"
    return Path(__file__).resolve().parents[1] / "hwgen" / "data" / "models"


def cache_dir() -> Path:
    root = os.environ.get("HWGEN_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "hwgen"
    return base / "models"


def build_model(name: str, moe: str | None = None, weights_dir: str | os.PathLike | None = None, pretrained: bool = True):
    """A torch model for ``name``: trained weights loaded (from ``weights_dir`` or the
    package data) when ``pretrained`` and the model is a trained one, else the seeded
    initialisation. ``moe`` overrides the MoE formulation."""
    import numpy as np
    import torch

    spec = get_spec(name)
    kw = dict(spec.kwargs)
    if spec.family == "m3vit" and moe is not None:
        kw["moe"] = moe
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        if spec.family == "vit":
            from .vit import ViT as cls
        elif spec.family == "m3vit":
            from .m3vit import M3ViT as cls
        elif spec.family == "convnext":
            from .convnext import ConvNeXt as cls
        else:
            from .convsharevit import ConvShareViT as cls
        model = cls(**kw)
    if pretrained and spec.trained:
        path = Path(weights_dir or data_dir()) / f"{spec.weights}.weights.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no trained weights for {name}; run `hwgen models train {spec.weights}`")
        with np.load(path) as z:
            state = {k: torch.from_numpy(z[k]) for k in z.files}
        model.load_state_dict(state)
    return model.eval()


def model_info(name: str) -> dict:
    """name, description, parameters, MACs (and metrics of a trained model, if present)."""
    from .layers import count_params

    spec = get_spec(name)
    m = build_model(name, pretrained=False)
    info = {"name": name, "description": spec.description, "params": count_params(m)}
    if spec.family == "m3vit":
        info["macs"] = m.macs(active_only=True)
        info["macs_dense_moe"] = m.macs(active_only=False)
    else:
        info["macs"] = m.macs()
    if spec.trained:
        mp = data_dir() / f"{spec.weights}.metrics.json"
        if mp.exists():
            info["metrics"] = json.loads(mp.read_text())
    return info


def resolve_model(name: str) -> Path | None:
    """``hwgen.model_sources`` entry point: a model name -> path of its ONNX file, or None."""
    name = str(name)
    if name not in SPECS:
        return None
    spec = SPECS[name]
    if spec.shipped:
        p = data_dir() / f"{name}.onnx"
        if p.exists():
            return p
    if name == "convsharevit-tiny-same":
        p = data_dir() / "convsharevit-tiny.onnx"
        if p.exists():
            return p
    if spec.trained:
        wp = data_dir() / f"{spec.weights}.weights.npz"
        if not wp.exists():
            return None
    out = cache_dir() / f"{name}.onnx"
    if not out.exists():
        from .export import export_onnx

        export_onnx(build_model(name), out)
    return out
