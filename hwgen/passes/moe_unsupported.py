"""Token-choice routings that are not ``hwgen.MoE``, named for :mod:`hwgen.passes.fuse_moe`'s
refusals (its numeric check already keeps them unfused; this says why, with the node and
op): group-limited routing (a TopK over groups of experts first, DeepSeek-V3's
n_group/topk_group), a per-expert selection bias added after the Sigmoid/Softmax
(DeepSeek-V3's e_score_correction_bias, ERNIE-4.5's moe_statics), sigmoid weights
renormalised over the chosen experts, and expert weights picked by a run-time index from
NonZero (a torch.jit trace of a loop over the experts hit: Hugging Face's eager experts).
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .pattern import descendants

__all__ = ["routing_not_moe"]


def _score_ancestors(g: Graph, prod, tensor: str, limit: int = 40) -> list[Node]:
    """The nodes ``tensor`` comes from, back to (and including) the first
    MatMul/Gemm/Einsum on each path, nearest first."""
    out, seen, frontier = [], set(), [tensor]
    while frontier and len(out) < limit:
        n = prod.get(frontier.pop(0))
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        if n.op not in ("MatMul", "Gemm", "Einsum"):
            frontier.extend(i for i in n.inputs if i and not g.tensors[i].is_const)
    return out


def _runtime_expert_index(g: Graph, anchor: Node, num_experts: int | None) -> Node | None:
    """A Gather of a stacked constant ``[E, ...]`` (E = num_experts, or any when None) by
    a run-time index that comes from a NonZero on the routing: experts picked per loop
    iteration, as torch.jit traces ``for e in expert_hit: W[e]``."""
    after = descendants(g, [o for o in anchor.outputs if o], limit=400)
    nonzero = {o for n in after if n.op == "NonZero" for o in n.outputs}
    if not nonzero:
        reached = set()
    else:
        reached = set(nonzero) | {o for n in descendants(g, nonzero, limit=400) for o in n.outputs if o}
    for n in after:
        if n.op != "Gather" or n.inputs[1] not in reached:
            continue
        data = g.tensors[n.inputs[0]]
        if data.is_const and len(data.shape) == 3 and (num_experts is None or data.shape[0] in (num_experts, num_experts + 1)):
            return n
    return None


def routing_not_moe(g: Graph, prod, anchor: Node, region_nodes: list[Node] | None = None) -> tuple[list[Node], str] | None:
    """A token-choice routing that hwgen.MoE does not compute, around a TopK/ArgMax ->
    (its nodes, why, by name), else None: group-limited routing (a TopK over groups of
    experts first), a per-expert selection bias added after the Sigmoid/Softmax
    (DeepSeek-V3's ``e_score_correction_bias``), sigmoid weights renormalised over the
    chosen experts, or expert weights gathered by a run-time index (a traced loop)."""
    later = [n for n in descendants(g, [o for o in anchor.outputs if o], limit=60)
             if n.op in ("TopK", "ArgMax") and np.issubdtype(g.tensors[n.inputs[0]].dtype, np.floating)]  # not a sort of ids
    if later:  # an inner selection (of groups, of a first expert): the last one reports, unless this one's block failed
        if anchor.op == "TopK" and later[0].op == "TopK" and region_nodes:
            return region_nodes, (
                f"multi-stage routing: this TopK's result feeds another TopK (node {later[0].name!r}), as in "
                f"group-limited routing (DeepSeek-V3's n_group/topk_group); hwgen.MoE takes one top-k of all experts")
        return None
    anc = _score_ancestors(g, prod, anchor.inputs[0])
    gates = [n for n in anc if n.op in ("MatMul", "Gemm", "Einsum")]
    norms = [n for n in anc if n.op in ("Sigmoid", "Softmax")]
    nodes = (region_nodes or anc[::-1] + [anchor])
    e = int(g.tensors[anchor.inputs[0]].shape[-1]) if g.tensors[anchor.inputs[0]].shape else 0
    picked = _runtime_expert_index(g, anchor, e or None)
    if picked is not None:
        return nodes, (
            f"the experts' weights are picked from the stacked constant {picked.inputs[0]!r} "
            f"{tuple(g.tensors[picked.inputs[0]].shape)} by a run-time index (node {picked.name!r}, Gather) that comes "
            f"from a NonZero over the experts hit: a traced loop over the experts hit (torch.jit.trace of transformers' "
            f"eager experts), which holds one expert call per expert hit while tracing and fails on inputs that hit "
            f"fewer; export the experts with experts_implementation='batched_mm', which hwgen fuses")
    if not gates or not norms:
        return None
    inner = [n for n in anc if n.op == "TopK"]
    if inner:
        return nodes, (
            f"group-limited routing: the experts are chosen among groups picked by another TopK (node "
            f"{inner[0].name!r}) on the {norms[0].op} scores (DeepSeek-V3's n_group/topk_group); hwgen.MoE takes the "
            f"top-k of all experts")
    for n in anc:
        c = [i for i in n.inputs if i and g.tensors[i].is_const]
        live = [i for i in n.inputs if i and not g.tensors[i].is_const]
        if n.op not in ("Add", "Sub") or len(c) != 1 or len(live) != 1 or g.tensors[c[0]].size != e or e < 2:
            continue
        before = {id(m) for m in _score_ancestors(g, prod, live[0])}
        if any(id(m) in before for m in norms) and np.ptp(np.asarray(g.tensors[c[0]].data)) > 0:
            return nodes, (
                f"selection bias: the experts are chosen by the {norms[0].op} scores plus a per-expert bias (node "
                f"{n.name!r}, {n.op}; DeepSeek-V3's e_score_correction_bias, ERNIE-4.5's moe_statics) but the chosen ones need not be weighted by "
                f"those scores; hwgen.MoE chooses and weights experts by the same scores (a bias may only be added to "
                f"the logits, before the {norms[0].op})")
    if norms[0].op == "Sigmoid" and region_nodes:
        for n in region_nodes:
            if n.op != "Div":
                continue
            d = prod.get(n.inputs[1])
            while d is not None and d.op in ("Add", "Cast", "Identity", "Clip", "Max"):
                d = prod.get(next((i for i in d.inputs if i and not g.tensors[i].is_const), ""))
            if d is not None and d.op == "ReduceSum":
                return nodes, (
                    f"renormalised sigmoid weights: the chosen experts' Sigmoid scores are divided by their sum (node "
                    f"{n.name!r}, Div; DeepSeek-V3's norm_topk_prob); hwgen.MoE's sigmoid_then_topk weights experts "
                    f"by their sigmoid scores as they are")
    return None
