"""Fuse a Mixture-of-Experts block into one ``hwgen.MoE`` node.

The fused op (semantics in :mod:`hwgen.interp.moe`) is: a gate ``x @ gate_w + gate_b``,
a normalisation with top-k selection, and a weighted sum of the selected experts, each a
two-layer MLP, plain or gated (SwiGLU/GeGLU). Exporters spell it in two ways, and this
pass takes both:

* **dense masked**: every expert runs on every token (per-expert MatMul/Gemm, or one
  batched MatMul/Einsum on stacked ``[E, D, H]`` weights) and the results are combined
  with weights that are zero for the unselected experts (built from TopK/ArgMax with
  Equal, OneHot, ScatterElements, ...);
* **sparse dispatch**: NonZero on the routing mask, Gather/GatherND of the routed tokens,
  the expert, scaling, ScatterND/ScatterElements (index_add) back.

Search (loose): an *anchor* is a TopK or ArgMax (over the last axis) whose input comes,
through elementwise ops and Softmax/Sigmoid, from a *gate* MatMul/Gemm of an activation
``x`` (:mod:`hwgen.passes.moe_gate`: router bias, temperature, a task or noise embedding
added to x, a gate weight computed at run time). The MoE output ``y`` is the immediate
post-dominator of the gate (the merge point of everything the routing influences) among
the tensors with x's token shape that come after the anchor and after some expert; the
region is every node between ``x`` (before any reshape of it) and ``y``, and it must be
closed (the reshapes of x stay and may have other readers, e.g. a shared expert).
Experts are the region's linear nodes with constant weights other than the gate
(:mod:`hwgen.passes.moe_experts`).

Check (strict): the region is evaluated on the values its inputs take in a sample run of
the whole graph, on random tokens, on identical tokens (all routed alike, which exposes
capacity limits) and on random values of each run-time gate input; it is compared with
the fused op under each gate normalisation (the structural guess first) by
:func:`verify_moe`. Only a region that verifies is replaced; an MoE-like block that does
not, and expert-choice routing, are reported (:func:`hwgen.passes.pattern.reject`) with
the reason, by name where the routing is one hwgen.MoE does not compute (expert choice,
token-dropping capacity limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..interp import interpret
from ..interp.moe import moe_reference
from ..ir import Graph, Node, Tensor
from .moe_experts import Experts, find_experts, has_weight
from .moe_gate import Gate, capacity_limit, expert_choice, find_gate, gate_path, norm_order, x_root
from .moe_unsupported import routing_not_moe
from .pattern import Region, descendants, eval_nodes, immediate_post_dominator, mismatch, region_between, region_is_closed, reject, scalar_const

__all__ = ["fuse_moe", "verify_moe"]

def _find_output(g: Graph, gate: Gate, anchor: Node, root: str) -> str | None:
    """The MoE output: the first tensor with a token shape through which everything the
    gate influences passes, that comes after the routing and after some expert."""
    token_shapes = {g.tensors[gate.x].shape[:-1], g.tensors[root].shape[:-1]}
    after_anchor = _reached(g, [o for o in anchor.outputs if o])
    prod = g.producers()
    expert_outs = [n.outputs[0] for n in descendants(g, root) if n is not gate.node and has_weight(g, prod, n)]
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


@dataclass
class Candidate:
    """A block that looks like an MoE: its parts, and its outputs on the check's feeds."""

    anchor: Node
    gate: Gate
    root: str  # x before reshapes
    chain: list[Node]  # the reshapes from root to gate.x
    region: object
    experts: Experts
    moe_in: str
    feeds: list[dict[str, np.ndarray]]
    refs: list[np.ndarray]


def _verify_feeds(g: Graph, gate: Gate, root: str, sample: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The sample run's values, random tokens, identical tokens (all routed alike: this
    catches capacity limits), and random values of each run-time gate input (a gate
    weight gathered per task, a task embedding)."""
    rng = np.random.default_rng(7)
    xs = sample[root]
    rows = xs.reshape(-1, xs.shape[-1])
    feeds = [{root: xs}]
    for _ in range(2):
        feeds.append({root: (rng.standard_normal(xs.shape) * (xs.std() + 1e-3) + xs.mean()).astype(xs.dtype)})
    feeds.append({root: np.broadcast_to(rows[:1], rows.shape).reshape(xs.shape).copy()})
    runtime = [t for t in (gate.w, gate.embed) if t and not g.tensors[t].is_const]
    for t in runtime:
        for f in feeds:
            f[t] = sample[t]
    for t in runtime:
        v = sample[t]
        f = {**feeds[1], t: (rng.standard_normal(v.shape) * (v.std() + 1e-3) + v.mean()).astype(v.dtype)}
        feeds.append(f)
    return feeds


def find_candidate(g: Graph, anchor: Node, sample: dict[str, np.ndarray]) -> Candidate | str | None:
    """The MoE-like block of ``anchor``: a Candidate, the reason it cannot be one (str)
    when it looks like an MoE, or None when it does not."""
    prod = g.producers()
    gate = find_gate(g, prod, anchor)
    if gate is None:
        return None
    root, chain = x_root(g, prod, gate.x)
    y = _find_output(g, gate, anchor, root)
    if y is None:
        return None
    region = region_between(g, root, y)
    if region is None or not any(n is gate.node for n in region.nodes) or not any(n is anchor for n in region.nodes):
        return None
    experts, why, moe_like = find_experts(g, region.nodes, gate.node, gate.num_experts)
    if experts is None:
        return (region, why) if moe_like else None  # a TopK beside one MLP: not an MoE
    if experts.w1.shape[1] != g.tensors[gate.x].shape[-1]:
        return region, f"its first expert layers take {experts.w1.shape[1]} features, the gate {g.tensors[gate.x].shape[-1]}"
    # the fused node reads x (after the reshapes, which stay and may have other readers,
    # e.g. a shared expert) if y has its token shape, else x_root
    y_t, x_t = g.tensors[y], g.tensors[gate.x]
    moe_in = gate.x if y_t.shape[:-1] == x_t.shape[:-1] else root
    kept = {id(n) for n in chain} if moe_in == gate.x else set()
    if not region_is_closed(g, Region([n for n in region.nodes if id(n) not in kept], region.inputs, y)):
        return region, "its routing or expert tensors are used outside the block"
    extra = [i for i in region.inputs[1:] if i not in (gate.w, gate.embed)]
    if extra:
        return region, f"the block reads {extra}, which the MoE op cannot take"
    if y_t.size != int(np.prod(g.tensors[moe_in].shape[:-1])) * experts.w2.shape[2]:
        return region, f"its output {y!r} {y_t.shape} does not hold one row per token"
    if any(t and not g.tensors[t].is_const and t not in sample for t in (root, gate.w, gate.embed)):
        from ..frontend import sample_inputs

        sample.update(interpret(g, sample_inputs(g), keep_all=True))
    feeds = _verify_feeds(g, gate, root, sample)
    try:
        refs = [eval_nodes(g, region.nodes, f, [y])[0] for f in feeds]
    except Exception as e:  # the block fails on other tokens: not a function we can fuse
        return region, f"evaluating the block on random tokens failed ({type(e).__name__}: {e})"
    return Candidate(anchor, gate, root, chain, region, experts, moe_in, feeds, refs)


def _fused_output(g: Graph, cand: Candidate, feed: dict, top_k: int, normalization: str, activation: str | None,
                  gate_scale: float, out_scale: float) -> np.ndarray:
    """hwgen.MoE's output on one check feed (second-layer weights times ``out_scale``)."""
    gate, ex = cand.gate, cand.experts
    dtype = g.tensors[cand.moe_in].dtype
    gw = gate.matrix(feed.get(gate.w, g.tensors[gate.w].data), dtype) * np.asarray(gate_scale, dtype)
    emb = None if gate.embed is None else feed.get(gate.embed, g.tensors[gate.embed].data)
    w2, b2 = (None if w is None else (w * out_scale).astype(w.dtype) for w in (ex.w2, ex.b2))
    return moe_reference(feed[cand.root], gw, gate.full_bias(gw, emb, dtype), ex.w1, ex.b1, w2, b2, top_k,
                         activation or ex.activation, normalization, ex.w3, ex.b3)


def verify_moe(g: Graph, cand: Candidate, top_k: int, normalization: str, activation: str | None = None,
               gate_scale: float = 1.0, out_scale: float = 1.0) -> str | None:
    """None if hwgen.MoE with these attributes (and the candidate's weights, the gate
    matrix times ``gate_scale``, the second layers times ``out_scale``) computes the block
    on every feed, else what differs."""
    for k, (f, ref) in enumerate(zip(cand.feeds, cand.refs)):
        got = _fused_output(g, cand, f, top_k, normalization, activation, gate_scale, out_scale)
        why = mismatch(got.reshape(ref.shape), ref)
        if why is not None:
            return f"top-{top_k} {normalization}, {activation or cand.experts.activation}: feed {k} {why}"
    return None


def _try_fuse(g: Graph, anchor: Node, sample: dict[str, np.ndarray]) -> bool:
    cand = find_candidate(g, anchor, sample)
    if cand is None:  # not an MoE block hwgen can read; say so if its routing is one by name
        found = routing_not_moe(g, g.producers(), anchor)
        return reject("moe", anchor, *found) if found else False
    if isinstance(cand, tuple):
        region, why = cand
        named = routing_not_moe(g, g.producers(), anchor, region.nodes)
        return reject("moe", anchor, region.nodes, capacity_limit(g, region.nodes) or (named[1] if named else why))
    gate = cand.gate
    # top-2 by two ArgMax (GShard/DeepSpeed: the second on the scores without the first)
    argmaxes = sum(1 for n in cand.region.nodes if n.op == "ArgMax")
    ks = [gate.top_k] + ([argmaxes] if anchor.op == "ArgMax" and 1 < argmaxes <= gate.num_experts else [])
    tries = [(k, c) for k in ks for c in norm_order(anchor, gate.ops)]
    first_why = None
    for k, norm in tries:
        why = verify_moe(g, cand, k, norm)
        scale = _output_scale(g, cand, k, norm) if why is not None else 1.0
        if scale != 1.0 and verify_moe(g, cand, k, norm, out_scale=scale) is None:
            why = None  # the routing weights times a constant (DeepSeek's routed_scaling_factor): into w2, b2
            cand.experts.w2, cand.experts.b2 = (None if w is None else (w * scale).astype(w.dtype)
                                                for w in (cand.experts.w2, cand.experts.b2))
        if why is None:
            gate.top_k = k
            _replace(g, cand, norm)
            return True
        first_why = first_why or why
    kind = "gated " if cand.experts.w3 is not None else ""
    named = routing_not_moe(g, g.producers(), anchor, cand.region.nodes)
    why = capacity_limit(g, cand.region.nodes) or (named[1] if named else None) or (
        f"{gate.num_experts} {kind}experts, top-{gate.top_k}, {cand.experts.activation}: its numbers differ from the MoE op "
        f"under every gate normalisation (e.g. {first_why})"
    )
    return reject("moe", anchor, cand.region.nodes, why)


def _output_scale(g: Graph, cand: Candidate, top_k: int, normalization: str) -> float:
    """The constant ``c`` with block = c * hwgen.MoE on the first feed (least squares; a
    scalar constant of the block's Mul/Div nodes within 1e-4 of it is taken exactly), or
    1.0 when there is none. The caller verifies ``c`` on every feed."""
    got = _fused_output(g, cand, cand.feeds[0], top_k, normalization, None, 1.0, 1.0).reshape(-1).astype(np.float64)
    ref = cand.refs[0].reshape(-1).astype(np.float64)
    den = float(got @ got)
    c = float(got @ ref) / den if den > 0 else 0.0
    if not np.isfinite(c) or abs(c) < 1e-6 or abs(c - 1.0) < 1e-6:
        return 1.0
    for n in cand.region.nodes:
        if n.op in ("Mul", "Div"):
            for i in n.inputs:
                v = scalar_const(g, i)
                if v and n.op == "Div":
                    v = 1.0 / v
                if v and abs(v - c) <= 1e-4 * abs(c):
                    return v
    return c


def _gate_bias(g: Graph, cand: Candidate, new: list[Node], gate_in: str, dtype) -> str:
    """The fused op's gate_b: a constant, or nodes computing ``embed @ gate_w + bias``."""
    gate, stem = cand.gate, cand.anchor.name
    emb = None if gate.embed is None else g.tensors[gate.embed]
    if emb is None or (emb.is_const and g.tensors[gate_in].is_const):
        b = gate.full_bias(g.tensors[gate_in].data, None if emb is None else emb.data, dtype)
        return "" if b is None else g.add_const(f"{stem}_moe_gate_b", b).name
    d, e = g.tensors[gate_in].shape
    row = g.add_const(f"{stem}_moe_row_shape", np.array([1, d], np.int64)).name
    flat = g.add_const(f"{stem}_moe_vec_shape", np.array([e], np.int64)).name
    t = _add_node(g, new, "Reshape", [gate.embed, row], (1, d), emb.dtype, f"{stem}_moe_embed_row")
    t = _add_node(g, new, "MatMul", [t, gate_in], (1, e), dtype, f"{stem}_moe_embed_gate")
    t = _add_node(g, new, "Reshape", [t, flat], (e,), dtype, f"{stem}_moe_embed_bias")
    if gate.bias is not None:
        b = g.add_const(f"{stem}_moe_gate_b", gate.bias.astype(dtype)).name
        t = _add_node(g, new, "Add", [t, b], (e,), dtype, f"{stem}_moe_gate_bias")
    return t


def _replace(g: Graph, cand: Candidate, norm: str) -> None:
    gate, ex, y, moe_in = cand.gate, cand.experts, cand.region.output, cand.moe_in
    stem = cand.anchor.name
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

    inputs = [moe_in, gate_in, _gate_bias(g, cand, new, gate_in, dtype), const("w1", ex.w1), const("b1", ex.b1),
              const("w2", ex.w2), const("b2", ex.b2)]
    if ex.w3 is not None:
        inputs += [const("w3", ex.w3), const("b3", ex.b3)]
    attrs = {"num_experts": int(gate.num_experts), "top_k": int(gate.top_k), "activation": ex.activation, "normalization": norm}
    out_shape = g.tensors[moe_in].shape[:-1] + (ex.w2.shape[2],)
    if tuple(g.tensors[y].shape) == out_shape:
        new.append(Node("MoE", g.fresh(f"{stem}_moe"), inputs, [y], attrs, "hwgen"))
    else:
        out = _add_node(g, new, "MoE", inputs, out_shape, g.tensors[y].dtype, f"{stem}_moe", domain="hwgen", **attrs)
        shape = g.add_const(f"{stem}_moe_shape", np.array(g.tensors[y].shape, np.int64)).name
        new.append(Node("Reshape", g.fresh(f"{stem}_moe_reshape"), [out, shape], [y]))
    kept = {id(n) for n in (cand.chain if moe_in == gate.x else [])}
    g.replace_nodes([n for n in cand.region.nodes if id(n) not in kept], new)


def _add_node(g: Graph, nodes: list[Node], op: str, inputs: list[str], shape, dtype, stem: str, domain: str = "", **attrs) -> str:
    out = g.fresh(f"{stem}_out")
    g.add_tensor(Tensor(out, tuple(shape), np.dtype(dtype)))
    nodes.append(Node(op, g.fresh(stem), inputs, [out], attrs, domain))
    return out


def _reached(g: Graph, start: list[str]) -> set[str]:
    """Tensors that depend on ``start`` (``start`` included)."""
    return set(start) | {o for n in descendants(g, start) for o in n.outputs if o}


def fuse_moe(g: Graph) -> bool:
    """Replace every verified MoE block (dense masked or sparse dispatch) by one
    hwgen.MoE node; report look-alikes that are not (expert choice, capacity limits, ...)."""
    anchors = [n for n in g.nodes if n.op in ("TopK", "ArgMax") and not n.domain]
    prod = g.producers()
    for a in anchors:
        found = expert_choice(g, prod, a)
        if found is not None:
            reject("moe", a, *found)
    if not any(gate_path(g, prod, a) for a in anchors):
        return False
    from ..frontend import sample_inputs

    sample = interpret(g, sample_inputs(g), keep_all=True)
    changed = False
    for a in anchors:
        if any(n is a for n in g.nodes) and _try_fuse(g, a, sample):
            changed = True
    return changed
