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

Search (loose): an *anchor* is a TopK or ArgMax (over the last axis) whose input comes,
through elementwise ops and Softmax/Sigmoid, from a *gate* MatMul/Gemm of an activation
``x``; Add/Sub/Mul/Div by per-expert constants on the way (router bias, temperature) are
folded into the gate. The gate weight may be computed at run time (e.g. ``gate[task]``).
The MoE output ``y`` is the immediate post-dominator of the gate (the merge point of
everything the routing influences) among the tensors with x's token shape that come after
the anchor and after some expert; the region is every node between ``x`` (before any
reshape of it) and ``y``, and it must be closed. Experts are the region's linear nodes
(MatMul, Gemm, Einsum) with constant weights other than the gate -- one per expert, or
one on stacked ``[E, ...]`` weights -- paired first/second layer by dataflow, with biases
from the following Add of a constant and the activation from the ops between the layers.

Check (strict): the region is evaluated on the values its inputs take in a sample run of
the whole graph, on random tokens, on identical tokens (all routed alike, which exposes
capacity limits) and, for a run-time gate weight, on a random one; it is compared with
the fused op under each gate normalisation (the structural guess first). Only a region
that verifies is replaced; a MoE-like block that does not is left alone with a warning
naming its anchor.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..interp import interpret
from ..interp.moe import NORMALIZATIONS, moe_reference
from ..ir import Graph, Node, Tensor
from .moe_experts import LINEAR_OPS, find_experts, parse_einsum
from .pattern import close, descendants, eval_nodes, immediate_post_dominator, region_between, region_is_closed, scalar_const

__all__ = ["fuse_moe"]

#: Ops allowed between the gate MatMul and the TopK/ArgMax anchor.
_GATE_PATH = {"Softmax", "Sigmoid", "Add", "Sub", "Mul", "Div", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
#: Ops that only change the layout of x (token order kept) before the gate reads it.
_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
# --- structure ------------------------------------------------------------------------
def _gate_of(g: Graph, prod, anchor: Node):
    """Walk from the anchor back to the gate: -> (gate node, ops on the way) or None."""
    t, ops = anchor.inputs[0], []
    for _ in range(16):
        n = prod.get(t)
        if n is None:
            return None
        if n.op in ("MatMul", "Gemm") or n.op == "Einsum" and len(n.inputs) == 2:
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


def _x_root(g: Graph, prod, x: str) -> tuple[str, list[Node]]:
    """x before any reshape that keeps its last (feature) axis, and those reshapes."""
    d = g.tensors[x].shape[-1]
    chain: list[Node] = []
    while True:
        n = prod.get(x)
        if n is None or n.op not in _RESHAPES or g.tensors[n.inputs[0]].is_const:
            return x, chain[::-1]
        src = g.tensors[n.inputs[0]]
        if not src.shape or src.shape[-1] != d or src.dynamic:
            return x, chain[::-1]
        chain.append(n)
        x = n.inputs[0]


class _Gate:
    """The gate of a candidate block: ``logits = (x @ w) * scale + bias``."""

    def __init__(self, node: Node, ops: list[Node], top_k: int, num_experts: int, trans_b: bool, x: str, w: str):
        self.node, self.ops, self.top_k, self.num_experts, self.trans_b = node, ops, top_k, num_experts, trans_b
        self.x, self.w = x, w
        self.scale = np.ones(num_experts)
        self.bias: np.ndarray | None = None

    def matrix(self, w: np.ndarray, dtype) -> np.ndarray:
        """gate_w of the fused op from the value of the gate's weight input."""
        w = np.asarray(w, np.float64)
        return ((w.T if self.trans_b else w) * self.scale).astype(dtype)


def _find_gate(g: Graph, prod, anchor: Node) -> _Gate | None:
    found = _gate_of(g, prod, anchor)
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
        top_k = int(k)
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
    gate = _Gate(node, ops, top_k, e, trans_b, x, w)
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


def _norm_order(anchor: Node, gate_ops: list[Node]) -> list[str]:
    """Gate normalisations to try, the structural guess first."""
    before = {n.op for n in gate_ops}
    if "Sigmoid" in before:
        first = ["sigmoid_then_topk"]
    elif "Softmax" in before:
        first = ["softmax_then_topk", "softmax_topk_renorm"] if anchor.op == "ArgMax" else ["softmax_topk_renorm", "softmax_then_topk"]
    else:
        first = ["topk_then_softmax", "topk"]
    return first + [n for n in NORMALIZATIONS if n not in first]


def _find_output(g: Graph, gate: _Gate, anchor: Node, x_root: str) -> str | None:
    """The MoE output: the first tensor with a token shape through which everything the
    gate influences passes, that comes after the routing and after some expert."""
    token_shapes = {g.tensors[gate.x].shape[:-1], g.tensors[x_root].shape[:-1]}
    after_anchor = _reached(g, [o for o in anchor.outputs if o])
    expert_outs = [
        n.outputs[0]
        for n in descendants(g, x_root)
        if n is not gate.node and n.op in LINEAR_OPS and any(g.tensors[i].is_const and len(g.tensors[i].shape) >= 2 for i in n.inputs if i)
    ]
    after_expert = _reached(g, expert_outs)

    def accept(t: str) -> bool:
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

    return immediate_post_dominator(g, gate.node, accept=accept)


def _verify_feeds(g: Graph, gate: _Gate, x_root: str, sample: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The sample run's values, random tokens, identical tokens (all routed alike: this
    catches capacity limits), and a random gate weight when it is not constant."""
    rng = np.random.default_rng(7)
    xs = sample[x_root]
    rows = xs.reshape(-1, xs.shape[-1])
    feeds = [{x_root: xs}]
    for _ in range(2):
        feeds.append({x_root: (rng.standard_normal(xs.shape) * (xs.std() + 1e-3) + xs.mean()).astype(xs.dtype)})
    feeds.append({x_root: np.broadcast_to(rows[:1], rows.shape).reshape(xs.shape).copy()})
    if not g.tensors[gate.w].is_const:
        wv = sample[gate.w]
        for f in feeds:
            f[gate.w] = wv
        feeds.append({x_root: feeds[1][x_root], gate.w: (rng.standard_normal(wv.shape) * (wv.std() + 1e-3)).astype(wv.dtype)})
    return feeds


def _try_fuse(g: Graph, anchor: Node, sample: dict[str, np.ndarray]) -> bool:
    prod = g.producers()
    gate = _find_gate(g, prod, anchor)
    if gate is None:
        return False
    x_root, chain = _x_root(g, prod, gate.x)
    y = _find_output(g, gate, anchor, x_root)
    if y is None:
        return False
    region = region_between(g, x_root, y)
    if region is None or not any(n is gate.node for n in region.nodes) or not any(n is anchor for n in region.nodes):
        return False
    experts, why, moe_like = find_experts(g, region.nodes, gate.node, gate.num_experts)
    if experts is None:
        return _warn(anchor, why) if moe_like else False  # a TopK beside one MLP: not an MoE
    w1, b1, w2, b2, activation = experts
    if w1.shape[1] != g.tensors[gate.x].shape[-1]:
        return _warn(anchor, f"its first expert layers take {w1.shape[1]} features, the gate {g.tensors[gate.x].shape[-1]}")
    if not region_is_closed(g, region):
        return _warn(anchor, "its routing or expert tensors are used outside the block")
    extra = [i for i in region.inputs[1:] if i != gate.w]
    if extra:
        return _warn(anchor, f"the block reads {extra}, which the MoE op cannot take")
    # the fused node reads x (after the reshapes) if y has its token shape, else x_root
    y_t, x_t = g.tensors[y], g.tensors[gate.x]
    moe_in = gate.x if y_t.shape[:-1] == x_t.shape[:-1] else x_root
    if y_t.size != int(np.prod(g.tensors[moe_in].shape[:-1])) * w2.shape[2]:
        return _warn(anchor, f"its output {y!r} {y_t.shape} does not hold one row per token")
    # verify
    if x_root not in sample or (gate.w not in sample and not g.tensors[gate.w].is_const):
        from ..frontend import sample_inputs

        sample.update(interpret(g, sample_inputs(g), keep_all=True))
    feeds = _verify_feeds(g, gate, x_root, sample)
    try:
        refs = [eval_nodes(g, region.nodes, f, [y])[0] for f in feeds]
    except Exception as e:  # the block fails on other tokens: not a function we can fuse
        return _warn(anchor, f"evaluating the block on random tokens failed ({type(e).__name__}: {e})")
    dtype = x_t.dtype

    def fused(f, k, norm):
        gw = gate.matrix(f.get(gate.w, g.tensors[gate.w].data), dtype)
        return moe_reference(f[x_root], gw, gate.bias, w1, b1, w2, b2, k, activation, norm)

    # top-2 by two ArgMax (GShard/DeepSpeed: the second on the scores without the first)
    argmaxes = sum(1 for n in region.nodes if n.op == "ArgMax")
    ks = [gate.top_k] + ([argmaxes] if anchor.op == "ArgMax" and 1 < argmaxes <= gate.num_experts else [])
    tries = [(k, c) for k in ks for c in _norm_order(anchor, gate.ops)]
    found = next((t for t in tries if all(close(fused(f, *t).reshape(r.shape), r) for f, r in zip(feeds, refs))), None)
    if found is None:
        return _warn(
            anchor,
            f"{gate.num_experts} experts, top-{gate.top_k}, {activation}: its numbers differ from the MoE op under every gate normalisation",
        )
    gate.top_k, norm = found
    _replace(g, anchor, gate, region, chain if moe_in == gate.x else [], moe_in, (w1, b1, w2, b2), activation, norm)
    return True


def _replace(g: Graph, anchor: Node, gate: _Gate, region, keep: list[Node], moe_in: str, weights, activation: str, norm: str) -> None:
    stem, y = anchor.name, region.output
    dtype = g.tensors[moe_in].dtype
    wt = g.tensors[gate.w]
    new: list[Node] = []
    if wt.is_const:
        gate_in = g.add_const(f"{stem}_moe_gate_w", gate.matrix(wt.data, dtype)).name
    else:  # computed at run time (e.g. gathered per task): transpose / scale it with nodes
        gate_in = gate.w
        shape = wt.shape[::-1] if gate.trans_b else wt.shape
        if gate.trans_b:
            gate_in = _add_node(g, new, "Transpose", [gate_in], shape, wt.dtype, f"{stem}_moe_gate_t", perm=[1, 0])
        if np.any(gate.scale != 1):
            scale = g.add_const(f"{stem}_moe_gate_scale", gate.scale.astype(wt.dtype)).name
            gate_in = _add_node(g, new, "Mul", [gate_in, scale], shape, wt.dtype, f"{stem}_moe_gate_s")

    def const(tag, arr):
        return "" if arr is None else g.add_const(f"{stem}_moe_{tag}", np.ascontiguousarray(arr, dtype)).name

    w1, b1, w2, b2 = weights
    inputs = [moe_in, gate_in, const("gate_b", gate.bias), const("w1", w1), const("b1", b1), const("w2", w2), const("b2", b2)]
    attrs = {"num_experts": int(gate.num_experts), "top_k": int(gate.top_k), "activation": activation, "normalization": norm}
    out_shape = g.tensors[moe_in].shape[:-1] + (w2.shape[2],)
    if tuple(g.tensors[y].shape) == out_shape:
        new.append(Node("MoE", g.fresh(f"{stem}_moe"), inputs, [y], attrs, "hwgen"))
    else:
        out = _add_node(g, new, "MoE", inputs, out_shape, g.tensors[y].dtype, f"{stem}_moe", domain="hwgen", **attrs)
        shape = g.add_const(f"{stem}_moe_shape", np.array(g.tensors[y].shape, np.int64)).name
        new.append(Node("Reshape", g.fresh(f"{stem}_moe_reshape"), [out, shape], [y]))
    kept = {id(n) for n in keep}
    g.replace_nodes([n for n in region.nodes if id(n) not in kept], new)


def _add_node(g: Graph, nodes: list[Node], op: str, inputs: list[str], shape, dtype, stem: str, domain: str = "", **attrs) -> str:
    out = g.fresh(f"{stem}_out")
    g.add_tensor(Tensor(out, tuple(shape), np.dtype(dtype)))
    nodes.append(Node(op, g.fresh(stem), inputs, [out], attrs, domain))
    return out


def _reached(g: Graph, start: list[str]) -> set[str]:
    """Tensors that depend on ``start`` (``start`` included)."""
    return set(start) | {o for n in descendants(g, start) for o in n.outputs if o}


def _warn(anchor: Node, why: str) -> bool:
    warnings.warn(f"fuse_moe: MoE-like block at {anchor.op} node {anchor.name!r} not fused: {why}", stacklevel=3)
    return False


def fuse_moe(g: Graph) -> bool:
    """Replace every verified MoE block (dense masked or sparse dispatch) by one hwgen.MoE node."""
    anchors = [n for n in g.nodes if n.op in ("TopK", "ArgMax") and not n.domain]
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
