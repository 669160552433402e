"""m3vit-edge-moe: Edge-MoE's exact configuration; exported once into the cache."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from models.registry import build_model, model_info, resolve_model  # noqa: E402

pytestmark = pytest.mark.torch


def test_edge_moe_config():
    m = build_model("m3vit-edge-moe", pretrained=False)
    assert m.tokens == 129 and m.dim == 192 and len(m.blocks) == 12
    assert m.img == (128, 256) and m.in_ch == 3 and m.embed.patch == 16
    moes = m.moe_layers()
    assert len(moes) == 6 and all(x.experts == 16 and x.top_k == 2 and x.hidden == 384 and x.tasks == 2 for x in moes)
    assert all(b.attn.heads == 3 for b in m.blocks)
    assert m.blocks[0].mlp.hidden == 768
    info = model_info("m3vit-edge-moe")
    # DESIGN.md: about 1.57 GOP per image (2 ops per MAC), experts counted top-2
    assert 1.55e9 < 2 * info["macs"] < 1.59e9


@pytest.mark.slow
def test_edge_moe_resolves_into_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    p = resolve_model("m3vit-edge-moe")
    assert p == tmp_path / "models" / "m3vit-edge-moe.onnx" and p.exists()
    mtime = p.stat().st_mtime_ns
    assert resolve_model("m3vit-edge-moe") == p and p.stat().st_mtime_ns == mtime  # exported once
    model = build_model("m3vit-edge-moe")
    x = np.random.default_rng(0).random((1, 3, 128, 256), dtype=np.float32)
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x, "task": np.array(1, dtype=np.int64)})
    with torch.no_grad():
        want = model(torch.from_numpy(x), torch.tensor(1))
    assert [g.shape for g in got] == [(1, 19), (1, 10)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)
