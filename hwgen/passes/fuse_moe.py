"""Fuse a Mixture-of-Experts block into one ``hwgen.MoE`` node.

The fused op (semantics in :mod:`hwgen.interp.moe`) is: a gate ``x @ gate_w + gate_b``,
a normalisation with top-k selection, and a weighted sum of the selected experts, each a
two-layer MLP. Exporters spell it in two ways, and this pass takes both:

* **dense masked**: every expert runs on every token (per-expert MatMul/Gemm, or one
  batched MatMul/Einsum on stacked ``[E, D, H]`` weights) and the results are combined
  with weights that are zero for the unselected experts (built from TopK/ArgMax with
  Equal, OneHot, ScatterElements, ...);
* **sparse dispatch**: NonZero on the routing mask, Gather/GatherND of the routed tokens,
  the expert, scaling, ScatterND/ScatterElements (index_add) back.

Search (loose): an *anchor* is a TopK or ArgMax whose input comes, through elementwise
ops and Softmax/Sigmoid, from a *gate* MatMul/Gemm of an activation ``x``. The MoE
output ``y`` is the immediate post-dominator of the gate (the merge point of everything
the routing influences) among tensors with x's token shape; the region is every node
between ``x`` (before any reshape of it) and ``y``, and it must be closed. Experts are
the linear nodes of the region with constant weights, paired first/second layer by
dataflow, with biases from the following Add of a constant and the activation from the
ops between the two layers.

Check (strict): the region is evaluated on the values its inputs take in a sample run of
the whole graph and on random tokens, and compared with the fused op under each gate
normalisation (the structural guess first). Only a region that verifies is replaced; a
MoE-like block that does not is left alone with a warning naming its anchor.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from ..interp import interpret
from ..interp.moe import NORMALIZATIONS, moe_reference
from ..ir import Graph, Node, Tensor
from .pattern import close, descendants, eval_nodes, immediate_post_dominator, region_between, region_is_closed, scalar_const

__all__ = ["fuse_moe"]

#: Ops allowed between the gate MatMul and the TopK/ArgMax anchor.
_GATE_PATH = {"Softmax", "Sigmoid", "Add", "Sub", "Mul", "Div", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
#: Ops that only change the layout of x (token order kept) before the gate reads it.
_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
#: Ops allowed between the first and the second layer of an expert.
_ACT_PATH = {"Gelu", "Relu", "Erf", "Tanh", "Sigmoid", "Div", "Mul", "Add", "Pow", "Cast", "Identity", "Sub"}
_LINEAR = {"MatMul", "Gemm", "Einsum"}


class _Linear:
    """A linear node with a constant weight, as ``w [E or 1, D, H]`` plus output layout."""

    def __init__(self, node: Node, act_in: str, w: np.ndarray, e_axis: int | None, h_axis: int, bias=None):
        self.node, self.act_in, self.w, self.e_axis, self.h_axis = node, act_in, w, e_axis, h_axis
        self.bias = bias  # [E or 1, H] or None
        self.post = node.outputs[0]  # output after the bias Add, if any
        self.nodes = [node]


# --- structure ------------------------------------------------------------------------
def _gate_of(g: Graph, prod, anchor: Node):
    """Walk from the anchor back to the gate: -> (gate node, ops on the way) or None."""
    t, ops = anchor.inputs[0], []
    for _ in range(16):
        n = prod.get(t)
        if n is None:
            return None
        if n.op in ("MatMul", "Gemm"):
            return n, ops
        if n.op not in _GATE_PATH:
            return None
        live = [i for i in n.inputs[:2] if i and not g.tensors[i].is_const]
        if n.op in _RESHAPES or n.op in ("Softmax", "Sigmoid", "Cast"):
            live = [n.inputs[0]]
        if len(live) != 1:
            return None
        ops.append(n)
        t = live[0]
    return None


def _x_root(g: Graph, prod, x: str) -> str:
    """x before any reshape that keeps its last (feature) axis."""
    d = g.tensors[x].shape[-1]
    while True:
        n = prod.get(x)
        if n is None or n.op not in _RESHAPES or g.tensors[n.inputs[0]].is_const:
            return x
        src = g.tensors[n.inputs[0]]
        if not src.shape or src.shape[-1] != d or src.dynamic:
            return x
        x = n.inputs[0]


def _parse_einsum(eq: str, ranks: list[int]):
    eq = eq.replace(" ", "")
    if "->" not in eq:
        return None
    lhs, out = eq.split("->")
    ops = lhs.split(",")
    if len(ops) != 2:
        return None
    spare = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
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
        parsed = _parse_einsum(str(n.attrs.get("equation", "")), [len(g.tensors[i].shape) for i in n.inputs])
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
    lin.nodes.append(add)


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


def _experts(g: Graph, region_nodes: list[Node], gate: Node, num_experts: int):
    """-> (w1, b1, w2, b2, activation) stacked over experts, or None."""
    cons = g.consumers()
    lins = [lin for n in region_nodes if n is not gate and n.op in _LINEAR for lin in [_linear_of(g, n, num_experts)] if lin]
    if not lins:
        return None
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
    if not pairs or len({id(p[1].node) for p in pairs}) != len(pairs) or len({p[2] for p in pairs}) != 1:
        return None
    if len(pairs) == 1 and pairs[0][0].w.shape[0] == num_experts and pairs[0][1].w.shape[0] == num_experts:
        chosen = pairs
    elif len(pairs) == num_experts and all(p[0].w.shape[0] == 1 and p[1].w.shape[0] == 1 for p in pairs):
        chosen = pairs
    else:
        return None
    try:
        w1 = np.concatenate([p[0].w for p in chosen])
        w2 = np.concatenate([p[1].w for p in chosen])
    except ValueError:
        return None
    if w1.shape[2] != w2.shape[1]:
        return None

    def stack_bias(layers, width):
        if all(lin.bias is None for lin in layers):
            return None
        return np.concatenate([lin.bias if lin.bias is not None else np.zeros((lin.w.shape[0], width), lin.w.dtype) for lin in layers])

    b1 = stack_bias([p[0] for p in chosen], w1.shape[2])
    b2 = stack_bias([p[1] for p in chosen], w2.shape[2])
    return w1, b1, w2, b2, chosen[0][2]


# --- the fusion -----------------------------------------------------------------------
def _norm_order(anchor: Node, gate_ops: list[Node]) -> list[str]:
    before = {n.op for n in gate_ops}
    if "Sigmoid" in before:
        first = ["sigmoid_then_topk"]
    elif "Softmax" in before:
        first = ["softmax_then_topk", "softmax_topk_renorm"] if anchor.op == "ArgMax" else ["softmax_topk_renorm", "softmax_then_topk"]
    else:
        first = ["topk_then_softmax", "topk"]
    return first + [n for n in NORMALIZATIONS if n not in first]


def _try_fuse(g: Graph, anchor: Node, sample: dict[str, np.ndarray]) -> bool:
    prod = g.producers()
    found = _gate_of(g, prod, anchor)
    if found is None:
        return False
    gate, gate_ops = found
    rank = len(g.tensors[anchor.inputs[0]].shape)
    if anchor.op == "TopK":
        if int(anchor.attrs.get("axis", -1)) % rank != rank - 1 or not int(anchor.attrs.get("largest", 1)):
            return False
        k = scalar_const(g, anchor.inputs[1]) if len(anchor.inputs) > 1 and anchor.inputs[1] else anchor.attrs.get("k")
        if k is None:
            return False
        top_k = int(k)
    else:
        if int(anchor.attrs.get("axis", 0)) % rank != rank - 1 or int(anchor.attrs.get("select_last_index", 0)):
            return False
        top_k = 1
    # gate: x @ gate_w (+ gate_b)
    x, wname = gate.inputs[0], gate.inputs[1]
    xt, wt = g.tensors[x], g.tensors[wname]
    if xt.is_const or len(wt.shape) != 2 or gate.op == "Gemm" and int(gate.attrs.get("transA", 0)):
        return False
    trans_b = gate.op == "Gemm" and int(gate.attrs.get("transB", 0))
    alpha = float(gate.attrs.get("alpha", 1.0)) if gate.op == "Gemm" else 1.0
    d, num_experts = (wt.shape[1], wt.shape[0]) if trans_b else wt.shape
    if xt.shape[-1] != d or g.tensors[anchor.inputs[0]].shape[-1] != num_experts or not 1 <= top_k <= num_experts:
        return False
    gate_b = None
    if gate.op == "Gemm" and len(gate.inputs) > 2 and gate.inputs[2]:
        c = g.tensors[gate.inputs[2]]
        if not c.is_const or c.data.size not in (1, num_experts):
            return False
        gate_b = np.broadcast_to(np.asarray(c.data).reshape(-1), (num_experts,)) * float(gate.attrs.get("beta", 1.0))
    elif gate_ops and gate_ops[-1].op == "Add":
        c = [g.tensors[i] for i in gate_ops[-1].inputs if g.tensors[i].is_const]
        if len(c) == 1 and c[0].data.size == num_experts and c[0].data.shape[-1] == num_experts:
            gate_b = np.asarray(c[0].data).reshape(-1)
    # the region: from x (before reshapes) to the merge point of all the gate influences
    x_root = _x_root(g, prod, x)
    token_shapes = {xt.shape[:-1], g.tensors[x_root].shape[:-1]}

    # y is after the routing (depends on the anchor) and after some expert (a linear
    # node with a constant weight, other than the gate, that depends on x)
    after_anchor = _reached(g, [o for o in anchor.outputs if o])
    expert_outs = [
        n.outputs[0]
        for n in descendants(g, x_root)
        if n is not gate and n.op in _LINEAR and any(g.tensors[i].is_const and len(g.tensors[i].shape) >= 2 for i in n.inputs if i)
    ]
    after_expert = _reached(g, expert_outs)

    def is_output(t: str) -> bool:
        tt = g.tensors.get(t)
        return (
            tt is not None
            and not tt.dynamic
            and np.issubdtype(tt.dtype, np.floating)
            and len(tt.shape) >= 1
            and tt.shape[:-1] in token_shapes
            and t in after_anchor
            and t in after_expert
        )

    y = immediate_post_dominator(g, gate, accept=is_output)
    if y is None:
        return False
    region = region_between(g, x_root, y)
    if region is None or not any(n is gate for n in region.nodes) or not any(n is anchor for n in region.nodes):
        return False
    experts = _experts(g, region.nodes, gate, num_experts)
    if experts is None:
        return False  # a TopK over a projection, but no experts: not a MoE
    w1, b1, w2, b2, activation = experts
    if not region_is_closed(g, region):
        return _warn(anchor, "its routing or expert tensors are used outside the block")
    extra = [i for i in region.inputs[1:] if i != wname]
    if extra:
        return _warn(anchor, f"the block reads {extra}, which the MoE op cannot take")
    y_shape = g.tensors[x_root].shape[:-1] + (w2.shape[2],)
    if int(np.prod(y_shape)) != g.tensors[y].size:
        return _warn(anchor, f"its output {y!r} {g.tensors[y].shape} does not hold one row per token")
    dtype = xt.dtype

    def gate_matrix(wval):
        wval = np.asarray(wval)
        return (wval.T if trans_b else wval) * np.asarray(alpha, wval.dtype)

    # verification feeds: the sample run, then random tokens (and a random task gate)
    rng = np.random.default_rng(7)
    xs = sample[x_root]
    feeds = [{x_root: xs}]
    for _ in range(2):
        feed = {x_root: (rng.standard_normal(xs.shape) * (xs.std() + 1e-3) + xs.mean()).astype(xs.dtype)}
        feeds.append(feed)
    # every token the same: all are routed to the same experts (catches capacity limits)
    feeds.append({x_root: np.broadcast_to(xs.reshape(-1, xs.shape[-1])[:1], (xs.size // xs.shape[-1], xs.shape[-1])).reshape(xs.shape).copy()})
    if not wt.is_const:
        for f in feeds:
            f[wname] = sample[wname]
        wv = sample[wname]
        feeds.append({x_root: feeds[1][x_root], wname: (rng.standard_normal(wv.shape) * (wv.std() + 1e-3)).astype(wv.dtype)})
    try:
        refs = [eval_nodes(g, region.nodes, f, [y])[0] for f in feeds]
    except Exception as e:  # the region fails on random tokens: not a function we can fuse
        return _warn(anchor, f"evaluating the block failed ({type(e).__name__})")
    norm = None
    for cand in _norm_order(anchor, gate_ops):
        ok = True
        for f, ref in zip(feeds, refs):
            gw = gate_matrix(f[wname] if wname in f else wt.data).astype(dtype)
            got = moe_reference(f[x_root], gw, gate_b, w1, b1, w2, b2, top_k, activation, cand)
            if not close(got.reshape(ref.shape), ref):
                ok = False
                break
        if ok:
            norm = cand
            break
    if norm is None:
        return _warn(anchor, f"{num_experts} experts, top-{top_k}, {activation}: the block's numbers differ from every gate normalisation")
    # replace
    stem = anchor.name
    new_nodes: list[Node] = []
    if wt.is_const:
        gate_in = g.add_const(f"{stem}_moe_gate_w", gate_matrix(wt.data).astype(dtype)).name
    elif trans_b or alpha != 1.0:
        gate_in = g.fresh(f"{stem}_moe_gate_w")
        g.add_tensor(Tensor(gate_in, (d, num_experts), wt.dtype))
        new_nodes.append(Node("Transpose", g.fresh(f"{stem}_moe_gate_t"), [wname], [gate_in], {"perm": [1, 0]}))
        if alpha != 1.0:
            return _warn(anchor, "a scaled Gemm gate on a non-constant weight is not supported")
    else:
        gate_in = wname

    def const(tag, arr):
        return "" if arr is None else g.add_const(f"{stem}_moe_{tag}", np.ascontiguousarray(arr, dtype)).name

    inputs = [x_root, gate_in, const("gate_b", gate_b), const("w1", w1), const("b1", b1), const("w2", w2), const("b2", b2)]
    attrs = {"num_experts": int(num_experts), "top_k": int(top_k), "activation": activation, "normalization": norm}
    out = y
    if tuple(g.tensors[y].shape) != y_shape:
        out = g.fresh(f"{stem}_moe_out")
        g.add_tensor(Tensor(out, y_shape, g.tensors[y].dtype))
        shape = g.add_const(f"{stem}_moe_shape", np.array(g.tensors[y].shape, np.int64)).name
        tail = [Node("Reshape", g.fresh(f"{stem}_moe_reshape"), [out, shape], [y])]
    else:
        tail = []
    moe = Node("MoE", g.fresh(f"{stem}_moe"), inputs, [out], attrs, "hwgen")
    g.replace_nodes(region.nodes, new_nodes + [moe] + tail)
    return True


def _reached(g: Graph, start: list[str]) -> set[str]:
    """Tensors that depend on ``start`` (``start`` included)."""
    return set(start) | {o for n in descendants(g, start) for o in n.outputs if o}


def _warn(anchor: Node, why: str) -> bool:
    warnings.warn(f"fuse_moe: MoE-like block at {anchor.op} node {anchor.name!r} not fused: {why}", stacklevel=3)
    return False


def fuse_moe(g: Graph) -> bool:
    """Replace every verified MoE block (dense masked or sparse dispatch) by one hwgen.MoE node."""
    anchors = [n for n in g.nodes if n.op in ("TopK", "ArgMax") and not n.domain]
    if not anchors:
        return False
    prod = g.producers()
    if not any(_gate_of(g, prod, a) for a in anchors):
        return False
    from ..frontend import sample_inputs

    sample = interpret(g, sample_inputs(g), keep_all=True)
    changed = False
    for a in anchors:
        if any(n is a for n in g.nodes) and _try_fuse(g, a, sample):
            changed = True
    return changed
