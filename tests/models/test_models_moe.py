"""The two MoE formulations compute the same function; the gate depends on the task."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models.m3vit import M3ViT, MoE  # noqa: E402

pytestmark = pytest.mark.torch


def _moe(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(dim=16, hidden=24, experts=6, top_k=2, tasks=3)
    args.update(kw)
    m = MoE(**args)
    with torch.no_grad():  # break the small-init symmetry so routing is not uniform
        m.gate.normal_(0, 1.0)
        m.b1.normal_(0, 0.1)
        m.b2.normal_(0, 0.1)
    return m


def _reference(m: MoE, x, task):
    """Independent per-token loop: softmax over all experts, top-k, renormalise, weighted sum."""
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for n in range(x.shape[1]):
            xt = x[b, n]
            p = torch.softmax(xt @ m.gate[task], -1)
            v, i = torch.topk(p, m.top_k)
            v = v / v.sum()
            for wv, e in zip(v, i):
                h = torch.nn.functional.gelu(xt @ m.w1[e] + m.b1[e])
                out[b, n] += wv * (h @ m.w2[e] + m.b2[e])
    return out


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_dense_equals_sparse_equals_reference(top_k, batch):
    m = _moe(top_k=top_k)
    x = torch.randn(batch, 7, 16)
    with torch.no_grad():
        for task in range(3):
            t = torch.tensor(task)
            m.mode = "dense"
            d = m(x, t)
            m.mode = "sparse"
            s = m(x, t)
            ref = _reference(m, x, task)
            torch.testing.assert_close(d, s, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(d, ref, rtol=1e-5, atol=1e-6)


def test_routing_weights_topk_normalised():
    m = _moe(top_k=2)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        probs, w, mask = m.route(x, torch.tensor(1))
    assert torch.all((w > 0).sum(-1) == 2)
    assert torch.equal(mask.sum(-1), torch.full((2, 5), 2.0))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))


def test_gate_is_per_task():
    m = _moe()
    x = torch.randn(1, 32, 16)
    with torch.no_grad():
        masks = [m.route(x, torch.tensor(t))[2] for t in range(3)]
        outs = [m(x, torch.tensor(t)) for t in range(3)]
    assert not torch.equal(masks[0], masks[1])
    assert not torch.allclose(outs[0], outs[1])


def test_m3vit_dense_equals_sparse_whole_model():
    torch.manual_seed(1)
    model = M3ViT().eval()
    with torch.no_grad():
        for layer in model.moe_layers():
            layer.gate.normal_(0, 1.0)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        for task in (0, 1):
            d = model.set_moe_mode("dense")(x, torch.tensor(task))
            s = model.set_moe_mode("sparse")(x, torch.tensor(task))
            for a, b in zip(d, s):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_odd_layers_are_moe():
    from models.m3vit import DenseBlock, MoEBlock

    model = M3ViT(depth=4)
    kinds = [type(b) for b in model.blocks]
    assert kinds == [DenseBlock, MoEBlock, DenseBlock, MoEBlock]
