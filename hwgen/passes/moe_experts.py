"""Expert extraction for the MoE fusion: the linear layers of a candidate region.

An expert is a two-layer MLP, plain (``act(x W1) W2``) or gated (``(act(x W1) * x W3)
W2``: SwiGLU, GeGLU). Its layers appear either once per expert (MatMul/Gemm with a
constant ``[D, H]`` weight) or once for all experts (batched MatMul or Einsum on a
stacked ``[E, D, H]`` weight); first and second layers are paired by dataflow (two first
layers that meet before one second layer are a gated expert: the one with the
activation on its way is W1, the other W3), biases come from the following Add of a
constant, and the activation from the ops between the layers. Used by
:mod:`hwgen.passes.fuse_moe`, which verifies the result numerically.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from ..ir import Graph, Node

__all__ = ["LINEAR_OPS", "parse_einsum", "find_experts", "Experts", "gathered_weight", "has_weight"]

#: Ops allowed between the first and the second layer of an expert.
_ACT_PATH = {"Gelu", "Relu", "Erf", "Tanh", "Sigmoid", "Div", "Mul", "Add", "Pow", "Cast", "Identity", "Sub", "Squeeze", "Unsqueeze"}
LINEAR_OPS = {"MatMul", "Gemm", "Einsum"}


def gathered_weight(g: Graph, prod, name: str) -> np.ndarray | None:
    """The stacked constant ``[E, ...]`` whose rows a Gather/GatherND picks per token by
    the routing indices (HF's ``batched_mm`` experts: ``W[expert_ids] @ x``), else None."""
    n = prod.get(name)
    if n is None or n.op not in ("Gather", "GatherND") or not g.tensors[n.inputs[0]].is_const:
        return None
    data, idx = g.tensors[n.inputs[0]], g.tensors[n.inputs[1]]
    if idx.is_const or len(data.shape) != 3:
        return None
    if n.op == "Gather" and int(n.attrs.get("axis", 0)) != 0:
        return None
    if n.op == "GatherND" and (int(n.attrs.get("batch_dims", 0)) or not idx.shape or idx.shape[-1] != 1):
        return None
    return np.asarray(data.data)


def has_weight(g: Graph, prod, n: Node) -> bool:
    """A linear node with a constant (or per-token gathered constant) weight."""
    return n.op in LINEAR_OPS and any(
        i and (g.tensors[i].is_const and len(g.tensors[i].shape) >= 2 or gathered_weight(g, prod, i) is not None) for i in n.inputs
    )


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


def _linear_of(g: Graph, n: Node, num_experts: int, prod=None) -> _Linear | None:
    ins = [i for i in n.inputs if i]
    if n.op == "MatMul" and prod is not None and not any(g.tensors[i].is_const for i in n.inputs):
        a, b = n.inputs
        rank = len(g.tensors[n.outputs[0]].shape)
        wa, wb = gathered_weight(g, prod, a), gathered_weight(g, prod, b)
        if wa is not None and wa.shape[0] == num_experts and rank == 3:  # W[ids] [S, O, I] @ x [S, I, 1]
            return _Linear(n, b, np.transpose(wa, (0, 2, 1)), None, rank - 2)
        if wb is not None and wb.shape[0] == num_experts and rank == 3:  # x [S, 1, I] @ W[ids] [S, I, O]
            return _Linear(n, a, wb, None, rank - 1)
        return None
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


@dataclass
class Experts:
    """The experts of a block, stacked over experts (hwgen.MoE's inputs 3-8)."""

    w1: np.ndarray
    b1: np.ndarray | None
    w2: np.ndarray
    b2: np.ndarray | None
    activation: str
    w3: np.ndarray | None = None
    b3: np.ndarray | None = None


def _activation_of(ops: set[str]) -> str:
    if "Gelu:tanh" in ops or "Tanh" in ops:
        return "gelu_tanh"
    if "Gelu:none" in ops or "Erf" in ops:
        return "gelu"
    if "Relu" in ops:
        return "relu"
    if "Sigmoid" in ops:
        return "silu"
    return "identity"


def _reach(g: Graph, cons, lin: _Linear, by_node: dict[int, _Linear]):
    """From ``lin`` through activation ops: (linear layers it feeds, {node id: op label})."""
    frontier, seen, hits = [lin.post], {}, []
    while frontier:
        t = frontier.pop()
        for n in cons.get(t, []):
            if id(n) in seen:
                continue
            if id(n) in by_node:
                if by_node[id(n)].act_in == t and all(h is not by_node[id(n)] for h in hits):
                    hits.append(by_node[id(n)])
                continue
            if n.op not in _ACT_PATH:
                continue
            seen[id(n)] = n.op if n.op != "Gelu" else f"Gelu:{n.attrs.get('approximate', 'none')}"
            frontier.extend(o for o in n.outputs if o)
    return hits, seen


def _split_halves(g: Graph, cons, lin: _Linear) -> list[_Linear] | None:
    """A first layer whose output is split in two halves along its features (a fused
    ``gate_up`` projection: ``gate, up = (x @ W).chunk(2)``) -> the two halves."""
    t = lin.post
    users = cons.get(t, [])
    if len(users) == 1 and users[0].op in ("Squeeze", "Reshape", "Identity"):
        t, users = users[0].outputs[0], cons.get(users[0].outputs[0], [])
    width = lin.w.shape[2]
    if width % 2:
        return None
    half = width // 2
    posts: list[str] | None = None
    if len(users) == 1 and users[0].op == "Split" and len([o for o in users[0].outputs if o]) == 2:
        outs = users[0].outputs
        if all(g.tensors[o].shape[int(users[0].attrs.get("axis", 0))] == half for o in outs):
            posts = list(outs)
    elif len(users) == 2 and all(u.op == "Slice" for u in users):
        starts = [g.const(u.inputs[1]) for u in users]
        if all(st is not None and st.size == 1 for st in starts) and sorted(int(st.reshape(-1)[0]) for st in starts) == [0, half]:
            order = sorted(range(2), key=lambda i: int(starts[i].reshape(-1)[0]))
            posts = [users[i].outputs[0] for i in order]
    if posts is None or any(g.tensors[p].shape[-1] != half and half not in g.tensors[p].shape for p in posts):
        return None
    out = []
    for k, p in enumerate(posts):
        v = _Linear(lin.node, lin.act_in, lin.w[:, :, k * half:(k + 1) * half], lin.e_axis, lin.h_axis)
        v.bias = None if lin.bias is None else lin.bias[:, k * half:(k + 1) * half]
        v.post = p
        out.append(v)
    return out


def _group(g: Graph, lins: list[_Linear]):
    """First layers grouped by the one second layer they feed -> [(firsts, second, act)].

    One first layer: a plain expert, activation from the ops on the way. Two: a gated
    expert; the ops only one of them passes are its own (W1's activation), the ops both
    pass are the combination (the Mul) and after."""
    cons = g.consumers()
    by_node = {id(lin.node): lin for lin in lins}
    firsts_all = []
    for lin in lins:  # a fused gate_up projection counts as two first layers
        firsts_all.extend(_split_halves(g, cons, lin) or [lin])
    reach = {id(lin): _reach(g, cons, lin, by_node) for lin in firsts_all}
    seconds = {id(h.node) for lin in firsts_all for h in reach[id(lin)][0] if len(reach[id(lin)][0]) == 1}
    groups: dict[int, list[_Linear]] = {}
    for lin in firsts_all:
        hits, _ = reach[id(lin)]
        if len(hits) == 1 and id(lin.node) not in seconds:
            groups.setdefault(id(hits[0].node), []).append(lin)
    out = []
    for sid, firsts in groups.items():
        second = by_node[sid]
        if len(firsts) == 1:
            out.append(([firsts[0]], second, _activation_of(set(reach[id(firsts[0])][1].values()))))
        elif len(firsts) == 2:
            own = [{k: v for k, v in reach[id(f)][1].items() if k not in reach[id(o)][1]} for f, o in (firsts, firsts[::-1])]
            acts = [_activation_of(set(o.values())) for o in own]
            if acts[0] != "identity" and acts[1] != "identity":
                continue  # both activated: not a GLU
            k = 0 if acts[0] != "identity" else 1
            out.append(([firsts[k], firsts[1 - k]], second, acts[k]))
    return out


def find_experts(g: Graph, region_nodes: list[Node], gate: Node, num_experts: int):
    """-> (Experts or None, why not, looks like experts)."""
    prod = g.producers()
    lins = [lin for n in region_nodes if n is not gate and n.op in LINEAR_OPS for lin in [_linear_of(g, n, num_experts, prod)] if lin]
    cons = g.consumers()
    for lin in lins:
        _absorb_bias(g, cons, lin)
    groups = _group(g, lins)
    stacked = [gr for gr in groups if all(lin.w.shape[0] == num_experts for lin in gr[0] + [gr[1]])]
    single = [gr for gr in groups if all(lin.w.shape[0] == 1 for lin in gr[0] + [gr[1]])]
    used = sum(len(gr[0]) + 1 for gr in groups)
    moe_like = bool(stacked) or len(single) >= 2 or len(lins) - used >= 2
    if len(stacked) == 1 and not single:
        chosen = stacked
    elif len(single) == num_experts and not stacked:
        chosen = single
    else:
        why = (
            f"found {len(stacked)} stacked and {len(single)} single expert MLPs among {len(lins)} linear layers for "
            f"{num_experts} gate outputs (deeper experts are not supported)"
        )
        return None, why, moe_like
    kinds = {len(gr[0]) for gr in chosen}
    if len(kinds) != 1:
        return None, "some experts are gated (GLU) and some are not", True
    if len({gr[2] for gr in chosen}) != 1:
        return None, f"experts have different activations {sorted({gr[2] for gr in chosen})}", True
    try:
        w1 = np.concatenate([gr[0][0].w for gr in chosen])
        w3 = np.concatenate([gr[0][1].w for gr in chosen]) if kinds == {2} else None
        w2 = np.concatenate([gr[1].w for gr in chosen])
    except ValueError:
        return None, "experts have different shapes", True
    if w1.shape[2] != w2.shape[1] or (w3 is not None and w3.shape != w1.shape):
        return None, "expert layer shapes do not chain", True

    def stack_bias(layers, width):
        if all(lin.bias is None for lin in layers):
            return None
        return np.concatenate([lin.bias if lin.bias is not None else np.zeros((lin.w.shape[0], width), lin.w.dtype) for lin in layers])

    b1 = stack_bias([gr[0][0] for gr in chosen], w1.shape[2])
    b3 = stack_bias([gr[0][1] for gr in chosen], w1.shape[2]) if w3 is not None else None
    b2 = stack_bias([gr[1] for gr in chosen], w2.shape[2])
    return Experts(w1, b1, w2, b2, chosen[0][2], w3, b3), "", True
