"""The gate of a candidate MoE block, for :mod:`hwgen.passes.fuse_moe`.

From an *anchor* (TopK, or ArgMax, over the last axis) back to the gate: through
elementwise ops and Softmax/Sigmoid to a MatMul/Gemm/Einsum ``x @ w``. Add/Sub/Mul/Div by
per-expert constants on the way (router bias, temperature) fold into a scale and a bias.
The router may read ``x + e`` where ``e`` is a vector the same for every token (a task
embedding gathered at run time, a learned noise/bias vector): ``e @ w`` joins the gate
bias, and the experts read ``x``.

Also here: how the routing was written (:func:`norm_order`, the gate normalisations to
try first) and the routings that are not ``hwgen.MoE`` and are reported by name
(:func:`expert_choice`, :func:`capacity_limit`; more in :mod:`hwgen.passes.moe_unsupported`).
"""

from __future__ import annotations

import numpy as np

from ..interp.moe import NORMALIZATIONS
from ..ir import Graph, Node
from .moe_experts import parse_einsum
from .pattern import descendants, scalar_const

__all__ = ["Gate", "gate_path", "find_gate", "x_root", "norm_order", "expert_choice", "capacity_limit", "RESHAPES"]

#: Ops allowed between the gate MatMul and the TopK/ArgMax anchor.
_GATE_PATH = {"Softmax", "Sigmoid", "Add", "Sub", "Mul", "Div", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
#: Ops that only change the layout of x (token order kept) before the gate reads it.
RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


def gate_path(g: Graph, prod, anchor: Node, extra_ops=frozenset()):
    """Walk from the anchor back to the gate: -> (gate node, ops on the way) or None."""
    t, ops = anchor.inputs[0], []
    for _ in range(16):
        n = prod.get(t)
        if n is None:
            return None
        if n.op in ("MatMul", "Gemm") or n.op == "Einsum" and len(n.inputs) == 2:
            return n, ops
        if n.op not in _GATE_PATH and n.op not in extra_ops:
            return None
        live = [i for i in n.inputs[:2] if i and not g.tensors[i].is_const]
        if n.op in RESHAPES or n.op in ("Softmax", "Sigmoid", "Cast", "Transpose"):
            live = [n.inputs[0]]
        if len(live) != 1:
            return None
        ops.append(n)
        t = live[0]
    return None


def x_root(g: Graph, prod, x: str) -> tuple[str, list[Node]]:
    """x before any reshape that keeps its last (feature) axis, and those reshapes."""
    d = g.tensors[x].shape[-1]
    chain: list[Node] = []
    while True:
        n = prod.get(x)
        if n is None or n.op not in RESHAPES or g.tensors[n.inputs[0]].is_const:
            return x, chain[::-1]
        src = g.tensors[n.inputs[0]]
        if not src.shape or src.shape[-1] != d or src.dynamic:
            return x, chain[::-1]
        chain.append(n)
        x = n.inputs[0]


class Gate:
    """The gate of a candidate block: ``logits = ((x + embed) @ w) * scale + bias``.

    Members
    -------
    node : Node
        The gate's MatMul/Gemm/Einsum.
    ops : list[Node]
        The nodes between it and the anchor.
    x, w : str
        The tokens the experts read and the gate weight ([D, E], or [E, D] if trans_b).
    embed : str or None
        A [.., D] vector added to x before the gate (constant or computed at run time).
    scale, bias : numpy arrays [E] (bias None if zero)
    """

    def __init__(self, node: Node, ops: list[Node], top_k: int, num_experts: int, trans_b: bool, x: str, w: str):
        self.node, self.ops, self.top_k, self.num_experts, self.trans_b = node, ops, top_k, num_experts, trans_b
        self.x, self.w = x, w
        self.embed: str | None = None
        self.embed_add: Node | None = None
        self.scale = np.ones(num_experts)
        self.bias: np.ndarray | None = None

    def matrix(self, w: np.ndarray, dtype) -> np.ndarray:
        """gate_w of the fused op from the value of the gate's weight input."""
        w = np.asarray(w, np.float64)
        return ((w.T if self.trans_b else w) * self.scale).astype(dtype)

    def full_bias(self, gate_w: np.ndarray, embed: np.ndarray | None, dtype) -> np.ndarray | None:
        """gate_b of the fused op: the folded bias plus ``embed @ gate_w``."""
        b = None if self.bias is None else np.asarray(self.bias, np.float64)
        if embed is not None:
            eb = np.asarray(embed, np.float64).reshape(-1) @ np.asarray(gate_w, np.float64)
            b = eb if b is None else b + eb
        return None if b is None else b.astype(dtype)


def find_gate(g: Graph, prod, anchor: Node) -> Gate | None:
    """The gate of ``anchor`` (a TopK/ArgMax over experts), or None."""
    found = gate_path(g, prod, anchor)
    if found is None:
        return None
    node, ops = found
    scores = g.tensors[anchor.inputs[0]]
    rank = len(scores.shape)
    if anchor.op == "TopK":
        if int(anchor.attrs.get("axis", -1)) % rank != rank - 1 or not int(anchor.attrs.get("largest", 1)):
            return None
        k = scalar_const(g, anchor.inputs[1]) if len(anchor.inputs) > 1 and anchor.inputs[1] else anchor.attrs.get("k")
        if k is None:
            return None
        top_k = _sliced_k(g, anchor, int(k))
    else:
        if int(anchor.attrs.get("axis", 0)) % rank != rank - 1 or int(anchor.attrs.get("select_last_index", 0)):
            return None
        top_k = 1
    if node.op == "Einsum":
        found = _einsum_gate(g, node)
        if found is None:
            return None
        x, w, trans_b = found
    else:
        x, w = node.inputs[:2]
        trans_b = node.op == "Gemm" and bool(int(node.attrs.get("transB", 0)))
    xt, wt = g.tensors[x], g.tensors[w]
    if xt.is_const or len(wt.shape) != 2 or node.op == "Gemm" and int(node.attrs.get("transA", 0)):
        return None
    d, e = (wt.shape[1], wt.shape[0]) if trans_b else wt.shape
    if xt.shape[-1] != d or scores.shape[-1] != e or not 1 <= top_k <= e:
        return None
    gate = Gate(node, ops, top_k, e, trans_b, x, w)
    _find_embedding(g, prod, gate)
    bias = np.zeros(e)
    if node.op == "Gemm":
        gate.scale = gate.scale * float(node.attrs.get("alpha", 1.0))
        if len(node.inputs) > 2 and node.inputs[2]:
            c = _per_expert(g, node.inputs[2], e)
            if c is None:
                return None
            bias = bias + c * float(node.attrs.get("beta", 1.0))
    # absorb Add/Sub/Mul/Div by constants between the gate and the normalisation
    cur = node.outputs[0]
    for n in reversed(ops):
        if n.op in ("Cast", "Identity"):
            cur = n.outputs[0]
            continue
        if n.op not in ("Add", "Sub", "Mul", "Div"):
            break
        k = [i for i in n.inputs if i != cur]
        c = _per_expert(g, k[0], e) if len(k) == 1 else None
        if c is None:
            break
        first = n.inputs[0] == cur
        if n.op == "Add":
            bias = bias + c
        elif n.op == "Sub":
            gate.scale, bias = (gate.scale, bias - c) if first else (-gate.scale, c - bias)
        elif n.op == "Mul":
            gate.scale, bias = gate.scale * c, bias * c
        elif first and np.all(c != 0):
            gate.scale, bias = gate.scale / c, bias / c
        else:
            break
        cur = n.outputs[0]
    gate.bias = bias if np.any(bias != 0) else None
    return gate


def _sliced_k(g: Graph, anchor: Node, k: int) -> int:
    """k, or k' when every reader of the TopK's outputs keeps only their first k' entries
    along the last axis (top-k by sorting: ``v, i = p.sort(descending=True); v[..., :k']``)."""
    cons = g.consumers()
    rank = len(g.tensors[anchor.inputs[0]].shape)
    ends = set()
    for o in anchor.outputs:
        for c in cons.get(o, []) if o else []:
            if c.op != "Slice" or len(c.inputs) < 3 or c.inputs[0] != o:
                return k
            ins = list(c.inputs) + [""] * (5 - len(c.inputs))
            start, end = (scalar_const(g, i) if i else None for i in ins[1:3])
            axis, step = (scalar_const(g, i) if i else d for i, d in zip(ins[3:5], (0, 1)))
            if None in (start, end, axis, step) or start != 0 or step != 1 or int(axis) % rank != rank - 1:
                return k
            ends.add(min(int(end), k))
    return ends.pop() if len(ends) == 1 and 0 < next(iter(ends)) < k else k


def _find_embedding(g: Graph, prod, gate: Gate) -> None:
    """``x + e`` read only by the gate, with ``e`` one [D] vector for every token that
    does not depend on x: the experts read x, and ``e @ w`` joins the gate bias."""
    add = prod.get(gate.x)
    if add is None or add.op != "Add":
        return
    cons = g.consumers()
    if [id(n) for n in cons.get(gate.x, [])] != [id(gate.node)]:
        return
    d = g.tensors[gate.x].shape[-1]
    for j in (0, 1):
        x0, e = add.inputs[j], add.inputs[1 - j]
        xt, et = g.tensors[x0], g.tensors[e]
        if xt.shape != g.tensors[gate.x].shape or not et.shape or et.shape[-1] != d or et.size != d:
            continue
        if et.dynamic or any(e in n.outputs for n in descendants(g, x0)):
            continue
        if len(cons.get(x0, [])) < 2:  # the experts read x0 too
            continue
        gate.x, gate.embed, gate.embed_add = x0, e, add
        return


def _einsum_gate(g: Graph, node: Node) -> tuple[str, str, bool] | None:
    """An Einsum that is ``x @ w`` over x's last axis -> (x, w, w is [E, D])."""
    parsed = parse_einsum(str(node.attrs.get("equation", "")), [len(g.tensors[i].shape) for i in node.inputs])
    if parsed is None:
        return None
    specs, out = parsed
    order = (0, 1) if g.tensors[node.inputs[0]].is_const else (1, 0)
    for k in order:
        sw, sa = specs[k], specs[1 - k]
        if len(sw) != 2 or not sa:
            continue
        d = sa[-1]
        e = sw.replace(d, "")
        if len(e) == 1 and d in sw and out == sa[:-1] + e:
            return node.inputs[1 - k], node.inputs[k], sw.index(d) == 1
    return None


def _per_expert(g: Graph, name: str, e: int) -> np.ndarray | None:
    """A constant that broadcasts along the expert axis only, as a vector [E]."""
    t = g.tensors.get(name)
    if t is None or not t.is_const or t.size not in (1, e) or (t.shape and t.shape[-1] not in (1, e)):
        return None
    return np.broadcast_to(np.asarray(t.data, np.float64).reshape(-1), (e,)).copy()


def norm_order(anchor: Node, gate_ops: list[Node]) -> list[str]:
    """Gate normalisations to try, the structural guess first."""
    before = {n.op for n in gate_ops}
    if "Sigmoid" in before:
        first = ["sigmoid_then_topk"]
    elif "Softmax" in before:
        first = ["softmax_then_topk", "softmax_topk_renorm"] if anchor.op == "ArgMax" else ["softmax_topk_renorm", "softmax_then_topk"]
    else:
        first = ["topk_then_softmax", "topk"]
    return first + [n for n in NORMALIZATIONS if n not in first]


def expert_choice(g: Graph, prod, anchor: Node) -> tuple[list[Node], str] | None:
    """A TopK over the *token* axis of gate scores (each expert picks its tokens) ->
    (the nodes from the gate to it, why it is not hwgen.MoE), else None."""
    if anchor.op != "TopK":
        return None
    found = gate_path(g, prod, anchor, extra_ops={"Transpose"})
    if found is None:
        return None
    node, ops = found
    w = next((i for i in node.inputs[:2] if i and g.tensors[i].is_const and len(g.tensors[i].shape) == 2), None)
    if w is None:
        return None
    rank = len(g.tensors[anchor.inputs[0]].shape)
    axis = int(anchor.attrs.get("axis", -1)) % rank
    for n in ops:  # anchor side first: map the axis back through transposes
        if n.op == "Transpose":
            perm = n.attrs.get("perm") or list(range(rank))[::-1]
            axis = int(perm[axis])
        elif len(g.tensors[n.inputs[0]].shape) != rank:
            return None
    out_rank = len(g.tensors[node.outputs[0]].shape)
    if rank != out_rank or axis == out_rank - 1:
        return None  # over the experts: token choice
    e = g.tensors[node.outputs[0]].shape[-1]
    k = scalar_const(g, anchor.inputs[1]) if len(anchor.inputs) > 1 and anchor.inputs[1] else anchor.attrs.get("k")
    cap = f"top-{int(k)}" if k is not None else "top-C"
    return [node] + ops[::-1] + [anchor], (
        f"expert-choice routing: each of the {e} experts takes its {cap} tokens (TopK over the token axis), so a "
        f"token gets any number of experts; hwgen.MoE routes each token to its top-k experts (token choice)"
    )


def capacity_limit(g: Graph, region_nodes: list[Node]) -> str | None:
    """A token-dropping capacity limit in the region (a CumSum over tokens compared with
    a constant): its description, else None."""
    cons = g.consumers()
    for n in region_nodes:
        if n.op != "CumSum":
            continue
        frontier, seen = [n.outputs[0]], set()
        for _ in range(4):
            nxt = []
            for t in frontier:
                for c in cons.get(t, []):
                    if id(c) in seen:
                        continue
                    seen.add(id(c))
                    if c.op in ("Less", "LessOrEqual", "Greater", "GreaterOrEqual"):
                        cap = next((v for i in c.inputs if (v := scalar_const(g, i)) is not None), None)
                        if cap is not None:
                            return (
                                f"capacity-limited routing: a token's place in its expert's queue (CumSum over the tokens) is "
                                f"compared with a capacity of {cap:g}, and tokens beyond it are dropped; hwgen.MoE drops no token"
                            )
                    if c.op in ("Sub", "Add", "Mul", "Cast", "Identity"):
                        nxt.extend(o for o in c.outputs if o)
            frontier = nxt
    return None

