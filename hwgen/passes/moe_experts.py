"""Expert extraction for the MoE fusion: the linear layers of a candidate region.

An expert is a two-layer MLP. Its layers appear either once per expert (MatMul/Gemm with
a constant ``[D, H]`` weight) or once for all experts (batched MatMul or Einsum on a
stacked ``[E, D, H]`` weight); first and second layers are paired by dataflow, biases come
from the following Add of a constant, and the activation from the ops between the
layers. Used by :mod:`hwgen.passes.fuse_moe`, which verifies the result numerically.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node

__all__ = ["LINEAR_OPS", "parse_einsum", "find_experts"]

#: Ops allowed between the first and the second layer of an expert.
_ACT_PATH = {"Gelu", "Relu", "Erf", "Tanh", "Sigmoid", "Div", "Mul", "Add", "Pow", "Cast", "Identity", "Sub"}
LINEAR_OPS = {"MatMul", "Gemm", "Einsum"}


class _Linear:
    """A linear node with a constant weight, as ``w [E or 1, D, H]`` plus output layout."""

    def __init__(self, node: Node, act_in: str, w: np.ndarray, e_axis: int | None, h_axis: int, bias=None):
        self.node, self.act_in, self.w, self.e_axis, self.h_axis = node, act_in, w, e_axis, h_axis
        self.bias = bias  # [E or 1, H] or None
        self.post = node.outputs[0]  # output after the bias Add, if any



def parse_einsum(eq: str, ranks: list[int]):
    """Two-operand explicit equation -> ([spec0, spec1], out) with "..." spelt out."""
    eq = eq.replace(" ", "")
    if "->" not in eq:
        return None
    lhs, out = eq.split("->")
    ops = lhs.split(",")
    if len(ops) != 2:
        return None
    spare = iter([c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in eq])
    fill = ""
    res = []
    for o, r in zip(ops, ranks):
        if "..." in o:
            n_ell = r - (len(o) - 3)
            if not fill:
                fill = "".join(next(spare) for _ in range(max(n_ell, 0)))
            o = o.replace("...", fill[len(fill) - n_ell:] if n_ell else "")
        res.append(o)
    out = out.replace("...", fill)
    return res, out


def _linear_of(g: Graph, n: Node, num_experts: int) -> _Linear | None:
    ins = [i for i in n.inputs if i]
    if n.op == "MatMul":
        a, b = n.inputs
        wt = g.tensors[b]
        if g.tensors[a].is_const or not wt.is_const or len(wt.shape) not in (2, 3):
            return None
        rank = len(g.tensors[n.outputs[0]].shape)
        w = np.asarray(wt.data)
        if w.ndim == 2:
            return _Linear(n, a, w[None], None, rank - 1)
        return _Linear(n, a, w, rank - 3, rank - 1)
    if n.op == "Gemm":
        a, b = n.inputs[:2]
        if g.tensors[a].is_const or not g.tensors[b].is_const or int(n.attrs.get("transA", 0)):
            return None
        w = np.asarray(g.tensors[b].data)
        w = (w.T if int(n.attrs.get("transB", 0)) else w) * float(n.attrs.get("alpha", 1.0))
        bias = None
        if len(n.inputs) > 2 and n.inputs[2]:
            c = g.tensors[n.inputs[2]]
            if not c.is_const or c.data.size not in (1, w.shape[1]):
                return None
            bias = np.broadcast_to(np.asarray(c.data).reshape(-1) * float(n.attrs.get("beta", 1.0)), (w.shape[1],))[None]
        return _Linear(n, a, w[None].astype(w.dtype), None, 1, bias)
    if n.op == "Einsum" and len(ins) == 2:
        consts = [g.tensors[i].is_const for i in n.inputs]
        if consts.count(True) != 1:
            return None
        k = consts.index(True)
        a, b = n.inputs[1 - k], n.inputs[k]
        parsed = parse_einsum(str(n.attrs.get("equation", "")), [len(g.tensors[i].shape) for i in n.inputs])
        if parsed is None:
            return None
        (s0, s1), out = parsed
        sa, sw = (s1, s0) if k == 0 else (s0, s1)
        w = np.asarray(g.tensors[b].data)
        contracted = [c for c in sw if c in sa and c not in out]
        if len(contracted) != 1 or len(set(sw)) != len(sw):
            return None
        d = contracted[0]
        only_w = [c for c in sw if c not in sa and c in out]
        shared = [c for c in sw if c in sa and c in out]
        if len(sw) == 2 and len(only_w) == 1 and not shared:
            h = only_w[0]
            return _Linear(n, a, np.transpose(w, (sw.index(d), sw.index(h)))[None], None, out.index(h))
        if len(sw) == 3:
            if len(shared) == 1 and len(only_w) == 1:
                e, h = shared[0], only_w[0]
            elif len(only_w) == 2 and not shared:
                sizes = [w.shape[sw.index(c)] for c in only_w]
                e = only_w[0] if sizes[0] == num_experts else only_w[1]
                h = only_w[1] if e == only_w[0] else only_w[0]
            else:
                return None
            wt = np.transpose(w, (sw.index(e), sw.index(d), sw.index(h)))
            return _Linear(n, a, wt, out.index(e), out.index(h))
    return None


def _absorb_bias(g: Graph, cons, lin: _Linear) -> None:
    """Take a following Add of a constant as the layer's bias."""
    if lin.bias is not None:
        return
    users = cons.get(lin.post, [])
    if len(users) != 1 or users[0].op != "Add":
        return
    add = users[0]
    other = [i for i in add.inputs if i != lin.post]
    if len(other) != 1 or not g.tensors[other[0]].is_const:
        return
    out_rank = len(g.tensors[lin.post].shape)
    c = np.asarray(g.tensors[other[0]].data)
    if c.ndim > out_rank:
        return
    c = c.reshape((1,) * (out_rank - c.ndim) + c.shape)
    keep = [lin.e_axis, lin.h_axis] if lin.e_axis is not None else [lin.h_axis]
    if any(c.shape[ax] != 1 for ax in range(out_rank) if ax not in keep):
        return
    c = np.transpose(c, keep + [ax for ax in range(out_rank) if ax not in keep]).reshape([c.shape[ax] for ax in keep])
    if len(keep) == 1:
        c = c[None]
    e, h = lin.w.shape[0], lin.w.shape[2]
    try:
        lin.bias = np.broadcast_to(c, (e, h)).astype(lin.w.dtype)
    except ValueError:
        return
    lin.post = add.outputs[0]


def _second_layer(g: Graph, cons, lin: _Linear, by_node: dict[int, _Linear]):
    """The linear node reached from ``lin`` through activation ops -> (it, activation)."""
    frontier, seen, ops, hits = [lin.post], set(), set(), []
    while frontier:
        t = frontier.pop()
        for n in cons.get(t, []):
            if id(n) in seen:
                continue
            seen.add(id(n))
            if id(n) in by_node:
                if by_node[id(n)].act_in == t:
                    hits.append(by_node[id(n)])
                continue
            if n.op not in _ACT_PATH:
                continue
            ops.add(n.op if n.op != "Gelu" else f"Gelu:{n.attrs.get('approximate', 'none')}")
            frontier.extend(o for o in n.outputs if o)
    if len(hits) != 1:
        return None
    if "Gelu:tanh" in ops or "Tanh" in ops:
        act = "gelu_tanh"
    elif "Gelu:none" in ops or "Erf" in ops:
        act = "gelu"
    elif "Relu" in ops:
        act = "relu"
    elif "Sigmoid" in ops:
        act = "silu"
    else:
        act = "identity"
    return hits[0], act


def find_experts(g: Graph, region_nodes: list[Node], gate: Node, num_experts: int):
    """-> ((w1, b1, w2, b2, activation) stacked over experts, why not, looks like experts)."""
    cons = g.consumers()
    lins = [lin for n in region_nodes if n is not gate and n.op in LINEAR_OPS for lin in [_linear_of(g, n, num_experts)] if lin]
    for lin in lins:
        _absorb_bias(g, cons, lin)
    by_node = {id(lin.node): lin for lin in lins}
    pairs, second = [], set()
    for lin in lins:
        found = _second_layer(g, cons, lin, by_node)
        if found is not None:
            pairs.append((lin, *found))
            second.add(id(found[0].node))
    pairs = [p for p in pairs if id(p[0].node) not in second]
    stacked = [p for p in pairs if p[0].w.shape[0] == num_experts and p[1].w.shape[0] == num_experts]
    single = [p for p in pairs if p[0].w.shape[0] == 1 and p[1].w.shape[0] == 1]
    moe_like = bool(stacked) or len(single) >= 2 or len(lins) - len(pairs) >= 2
    if len(stacked) == 1 and not single:
        chosen = stacked
    elif len(single) == num_experts and not stacked:
        chosen = single
    else:
        why = (
            f"found {len(stacked)} stacked and {len(single)} single two-layer experts among {len(lins)} linear "
            f"layers for {num_experts} gate outputs (gated/SwiGLU or deeper experts are not supported)"
        )
        return None, why, moe_like
    if len({id(p[1].node) for p in chosen}) != len(chosen):
        return None, "two experts share a second layer (gated/SwiGLU experts are not supported)", True
    if len({p[2] for p in chosen}) != 1:
        return None, f"experts have different activations {sorted({p[2] for p in chosen})}", True
    try:
        w1 = np.concatenate([p[0].w for p in chosen])
        w2 = np.concatenate([p[1].w for p in chosen])
    except ValueError:
        return None, "experts have different shapes", True
    if w1.shape[2] != w2.shape[1]:
        return None, "expert layer shapes do not chain", True

    def stack_bias(layers, width):
        if all(lin.bias is None for lin in layers):
            return None
        return np.concatenate([lin.bias if lin.bias is not None else np.zeros((lin.w.shape[0], width), lin.w.dtype) for lin in layers])

    b1 = stack_bias([p[0] for p in chosen], w1.shape[2])
    b2 = stack_bias([p[1] for p in chosen], w2.shape[2])
    return (w1, b1, w2, b2, chosen[0][2]), "", True


# --- the fusion -----------------------------------------------------------------------
