"""Fuse MatMul -> [scale] -> [+ bias] -> Softmax -> MatMul into ``hwgen.Attention``.

The fused op (semantics in :mod:`hwgen.interp.fused`) takes ``q [..., Sq, D]``,
``kT [..., D, Sk]``, ``v [..., Sk, Dv]`` and an optional additive ``bias`` (mask), with
attribute ``scale``. Heads are the third-from-last axis of a rank-4 ``q``
(``num_heads``). Scaling by a scalar constant (Mul or Div) between the first MatMul and
the Softmax is absorbed; scaling of q or k before the MatMul stays outside. The match is
verified numerically before it replaces the nodes.
"""

from __future__ import annotations

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node, Tensor
from .pattern import Region, close, eval_nodes, region_is_closed, scalar_const

__all__ = ["fuse_attention"]


def _try_fuse(g: Graph, sm: Node) -> bool:
    prod, cons = g.producers(), g.consumers()
    s = g.tensors[sm.inputs[0]]
    rank = len(s.shape)
    if rank < 2 or int(sm.attrs.get("axis", -1)) % rank != rank - 1:
        return False
    chain: list[Node] = [sm]
    p = sm.outputs[0]
    users = cons.get(p, [])
    guard = _nan_guard(g, users, p)
    if guard:  # torch's SDPA decomposition: Where(IsNaN(p), 0, p)
        chain += guard
        p = guard[-1].outputs[0]
        users = cons.get(p, [])
    if len(users) != 1 or users[0].op != "MatMul" or users[0].inputs[0] != p:
        return False
    mm2 = users[0]
    chain.append(mm2)
    scale, bias = 1.0, None
    t = sm.inputs[0]
    n = prod.get(t)
    if n is not None and n.op == "Add":
        other = [i for i in n.inputs if i != _matmul_side(g, prod, n)]
        if len(other) == 1:
            bias = other[0]
            chain.insert(0, n)
            t = next(i for i in n.inputs if i != bias)
            n = prod.get(t)
    if n is not None and n.op in ("Mul", "Div"):
        c = [scalar_const(g, i) for i in n.inputs]
        if n.op == "Mul" and (c[0] is not None or c[1] is not None):
            k = 0 if c[0] is not None else 1
            scale, t = c[k], n.inputs[1 - k]
            chain.insert(0, n)
        elif n.op == "Div" and c[1] is not None and c[1] != 0:
            scale, t = 1.0 / c[1], n.inputs[0]
            chain.insert(0, n)
        n = prod.get(t)
    if n is None or n.op != "MatMul":
        return False
    chain.insert(0, n)
    q, kT = n.inputs
    v = mm2.inputs[1]
    qs, ks, vs = (g.tensors[i].shape for i in (q, kT, v))
    if len(qs) < 2 or len(ks) < 2 or len(vs) < 2:
        return False
    region = Region(chain, [q, kT, v] + ([bias] if bias else []), mm2.outputs[0])
    if not region_is_closed(g, region):
        return False
    attrs = {"scale": float(scale), "num_heads": int(qs[-3]) if len(qs) >= 3 else 1}
    new = Node("Attention", g.fresh(f"{sm.name}_attention"), list(region.inputs), [region.output], attrs, "hwgen")
    rng = np.random.default_rng(2)
    feeds = {
        i: (g.tensors[i].data if g.tensors[i].is_const else rng.standard_normal(g.tensors[i].shape).astype(g.tensors[i].dtype))
        for i in region.inputs
    }
    got = run_node(new, [feeds[i] for i in region.inputs], g.opset)[0]
    if not close(got, eval_nodes(g, chain, feeds, [region.output])[0]):
        return False
    g.replace_nodes(chain, [new])
    return True


def _nan_guard(g: Graph, users: list[Node], p: str) -> list[Node]:
    """[IsNaN, Where] if ``users`` of ``p`` are exactly Where(IsNaN(p), 0, p)."""
    if len(users) != 2 or {u.op for u in users} != {"IsNaN", "Where"}:
        return []
    isnan = next(u for u in users if u.op == "IsNaN")
    where = next(u for u in users if u.op == "Where")
    zero = scalar_const(g, where.inputs[1])
    if where.inputs[0] != isnan.outputs[0] or where.inputs[2] != p or zero != 0.0:
        return []
    return [isnan, where]


def _matmul_side(g: Graph, prod, add: Node) -> str | None:
    """The input of ``add`` that comes (through a scalar Mul/Div) from a MatMul."""
    for i in add.inputs:
        n = prod.get(i)
        if n is not None and n.op in ("Mul", "Div"):
            n = prod.get(next((j for j in n.inputs if not g.tensors[j].is_const), ""), None)
        if n is not None and n.op == "MatMul":
            return i
    return None


def _from_onnx_attention(g: Graph, n: Node) -> bool:
    """ONNX Attention (opset 23) with 4-D inputs, equal heads, no cache/causal/softcap
    -> Transpose(K) + hwgen.Attention."""
    ins = [i for i in n.inputs]
    if len(ins) > 4 and any(ins[4:]) or any(n.outputs[1:]):
        return False
    if int(n.attrs.get("is_causal", 0)) or float(n.attrs.get("softcap", 0.0)) or int(n.attrs.get("qk_matmul_output_mode", 0)):
        return False
    q, k, v = (g.tensors[i] for i in ins[:3])
    if len(q.shape) != 4 or q.shape[1] != k.shape[1]:
        return False
    mask = ins[3] if len(ins) > 3 and ins[3] else None
    if mask is not None and g.tensors[mask].dtype == np.bool_:
        return False
    scale = n.attrs.get("scale")
    scale = 1.0 / float(np.sqrt(q.shape[-1])) if scale is None else float(scale)
    kT = g.fresh(f"{n.name}_kT")
    g.add_tensor(Tensor(kT, k.shape[:2] + (k.shape[3], k.shape[2]), k.dtype))
    tr = Node("Transpose", g.fresh(f"{n.name}_transpose_k"), [k.name], [kT], {"perm": [0, 1, 3, 2]})
    att = Node(
        "Attention",
        g.fresh(f"{n.name}_attention"),
        [q.name, kT, v.name] + ([mask] if mask else []),
        [n.outputs[0]],
        {"scale": scale, "num_heads": int(q.shape[1])},
        "hwgen",
    )
    g.replace_nodes([n], [tr, att])
    return True


def fuse_attention(g: Graph) -> bool:
    """Replace every MatMul-Softmax-MatMul chain, and every plain ONNX Attention node,
    by one hwgen.Attention node."""
    changed = False
    for sm in [n for n in g.nodes if n.op == "Softmax"]:
        if sm in g.nodes and _try_fuse(g, sm):
            changed = True
    for n in [n for n in g.nodes if n.op == "Attention" and n.domain == ""]:
        changed |= _from_onnx_attention(g, n)
    return changed
