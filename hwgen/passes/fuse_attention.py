"""Fuse MatMul -> [scale] -> [+ bias] -> Softmax -> MatMul into ``hwgen.Attention``.

The fused op (semantics in :mod:`hwgen.interp.fused`) takes ``q [..., Sq, D]``,
``kT [..., D, Sk]``, ``v [..., Sk, Dv]`` and an optional additive ``bias`` (mask), with
attribute ``scale``. Heads are the third-from-last axis of a rank-4 ``q``
(``num_heads``). Scaling by a scalar constant (Mul or Div) between the first MatMul and
the Softmax is absorbed; scaling of q or k before the MatMul stays outside.

ONNX ``Attention`` nodes (opset 23+) with 4-D inputs, equal head counts, no cache, no
causal/window/padding masks and only ``Y`` used become ``Transpose(K)`` + ``hwgen.Attention``.

Every match is verified numerically (:func:`verify_attention`, on
:func:`~hwgen.passes.pattern.probe_inputs`) before it replaces the nodes; a chain that
looked like attention but is not fused (failed check, softmax over another axis, an
intermediate used elsewhere, an ONNX Attention feature the fused op lacks) is reported
(:func:`~hwgen.passes.pattern.reject`).
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Tensor
from .pattern import Region, eval_nodes, mismatch, probe_inputs, region_is_closed, reject, scalar_const

__all__ = ["fuse_attention", "verify_attention"]


def _probe_feeds(g: Graph, names: list[str], seed: int) -> list[dict[str, np.ndarray]]:
    """Probe values of the region inputs: constants as they are, activations of
    realistic scale, a run-time bias (mask) as standard normal values."""
    feeds = []
    for k in range(4):
        f = {}
        for j, name in enumerate(names):
            t = g.tensors[name]
            if t.is_const:
                f[name] = t.data
            elif not np.issubdtype(t.dtype, np.floating):
                f[name] = np.zeros(t.shape, t.dtype)
            elif j == 3 and len(names) > 3:
                f[name] = np.random.default_rng(seed + k).standard_normal(t.shape).astype(t.dtype)
            else:
                f[name] = probe_inputs(t.shape, t.dtype, seeds=1, log_std=(-1.0, 0.5), seed=seed + 10 * k + j)[0]
        feeds.append(f)
    return feeds


def verify_attention(g: Graph, nodes: list[Node], region_inputs: list[str], output: str, fused: list[Node], fused_inputs: list[str] | None = None) -> str | None:
    """None if ``fused`` (nodes reading ``fused_inputs``, default ``region_inputs``)
    computes what ``nodes`` compute from ``region_inputs`` into ``output``, on the
    probe inputs; else what differs."""
    for k, f in enumerate(_probe_feeds(g, region_inputs, seed=2)):
        want = eval_nodes(g, nodes, f, [output])[0]
        got = eval_nodes(g, fused, f, [output])[0]
        why = mismatch(got, want)
        if why is not None:
            return f"{fused[-1].op}({', '.join(f'{a}={v:.4g}' if isinstance(v, float) else f'{a}={v}' for a, v in fused[-1].attrs.items())}) on probe {k}: {why}"
    return None


def _try_fuse(g: Graph, sm: Node) -> bool:
    prod, cons = g.producers(), g.consumers()
    s = g.tensors[sm.inputs[0]]
    rank = len(s.shape)
    if rank < 2:
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
    if int(sm.attrs.get("axis", -1)) % rank != rank - 1:
        return reject("attention", sm, chain, f"the softmax runs over axis {int(sm.attrs.get('axis', -1))}, not the key axis {rank - 1}")
    region = Region(chain, [q, kT, v] + ([bias] if bias else []), mm2.outputs[0])
    if not region_is_closed(g, region):
        return reject("attention", sm, chain, "its scores or probabilities are used outside the chain")
    attrs = {"scale": float(scale), "num_heads": int(qs[-3]) if len(qs) >= 3 else 1}
    new = Node("Attention", g.fresh(f"{sm.name}_attention"), list(region.inputs), [region.output], attrs, "hwgen")
    why = verify_attention(g, chain, region.inputs, region.output, [new])
    if why is not None:
        return reject("attention", sm, chain, why)
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
    """ONNX Attention with 4-D inputs, equal heads, no cache/causal/window/softcap/padding
    and only Y used -> Transpose(K) + hwgen.Attention, checked numerically."""
    ins = list(n.inputs) + [""] * (7 - len(n.inputs))
    a = n.attrs
    why = None
    if any(ins[4:7]):
        why = "it has a key/value cache or nonpad_kv_seqlen"
    elif any(n.outputs[1:]):
        why = "its present_key/present_value/qk_matmul_output outputs are used"
    elif int(a.get("is_causal", 0)) or int(a.get("left_window_size", -1)) >= 0 or int(a.get("right_window_size", -1)) >= 0:
        why = "it is causal or windowed (hwgen.Attention takes an additive bias only)"
    elif float(a.get("softcap", 0.0) or 0.0):
        why = "it soft-caps the scores"
    if why is None:
        q, k, v = (g.tensors[i] for i in ins[:3])
        mask = ins[3] or None
        if len(q.shape) != 4:
            why = f"its inputs are {len(q.shape)}-D (hwgen.Attention takes [B, H, S, D])"
        elif q.shape[1] != k.shape[1]:
            why = f"{q.shape[1]} query heads share {k.shape[1]} key/value heads (grouped-query)"
        elif mask is not None and g.tensors[mask].dtype == np.bool_:
            why = "its mask is boolean"
        elif mask is not None and g.tensors[mask].shape[-1] != k.shape[2]:
            why = "its mask is shorter than the keys"
    if why is not None:
        return reject("attention", n, [n], why)
    scale = a.get("scale")
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
    region_inputs = [q.name, k.name, v.name] + ([mask] if mask else [])
    why = verify_attention(g, [n], region_inputs, n.outputs[0], [tr, att])
    if why is not None:
        del g.tensors[kT]
        return reject("attention", n, [n], why)
    g.replace_nodes([n], [tr, att])
    return True


def fuse_attention(g: Graph) -> bool:
    """Replace every MatMul-Softmax-MatMul chain, and every plain ONNX Attention node,
    by one hwgen.Attention node (each checked numerically)."""
    changed = False
    for sm in [n for n in g.nodes if n.op == "Softmax"]:
        if any(n is sm for n in g.nodes) and _try_fuse(g, sm):
            changed = True
    for n in [n for n in g.nodes if n.op == "Attention" and n.domain == ""]:
        changed |= _from_onnx_attention(g, n)
    return changed
