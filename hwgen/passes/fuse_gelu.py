"""Fuse Erf-form and Tanh-form GELU subgraphs into one ``Gelu`` node.

``x * 0.5 * (1 + erf(x / sqrt 2))`` (any association order, Div or Mul by the
constant) becomes ``Gelu(x)``; ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
becomes ``Gelu(x, approximate="tanh")``. The search starts at each Erf/Tanh node, takes
each non-constant tensor a few nodes before it as a candidate ``x`` and each tensor of
``x``'s shape a few nodes after it as a candidate output, and fuses the largest closed
region that computes GELU on :func:`~hwgen.passes.pattern.probe_inputs` (several seeds,
rows of scale 0.03 to 30, so that the erf and tanh forms, about 5e-4 apart near
|x| = 2, are told apart). An Erf, or a Tanh with GELU's cubic term, around which no region
computes GELU is reported (:func:`~hwgen.passes.pattern.reject`).
"""

from __future__ import annotations

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node
from .pattern import eval_nodes, mismatch, probe_inputs, reject, scalar_const, single_input_regions

__all__ = ["fuse_gelu", "verify_gelu"]

_BACK = 6  # nodes before the Erf/Tanh that may belong to the pattern
_FORWARD = 6  # nodes after it


def _ancestor_tensors(g: Graph, n: Node, depth: int) -> list[str]:
    prod = g.producers()
    out: list[str] = []
    frontier = [i for i in n.inputs if i]
    for _ in range(depth):
        nxt = []
        for t in frontier:
            if t in out or g.tensors[t].is_const:
                continue
            out.append(t)
            p = prod.get(t)
            if p is not None:
                nxt.extend(i for i in p.inputs if i)
        frontier = nxt
    return out


def verify_gelu(g: Graph, region, x: str, approximate: str) -> str | None:
    """None if ``region`` computes ``Gelu(x, approximate)`` on the probe inputs, else
    what differs."""
    xt = g.tensors[x]
    probe = Node("Gelu", "probe", [x], ["y"], {"approximate": approximate})
    for k, s in enumerate(probe_inputs(xt.shape, xt.dtype, log_std=(-1.5, 1.5), seed=1)):
        why = mismatch(eval_nodes(g, region.nodes, {x: s}, [region.output])[0], run_node(probe, [s], g.opset)[0])
        if why is not None:
            return f"Gelu(approximate={approximate!r}) on probe {k}: {why}"
    return None


def _looks_like_gelu(g: Graph, anchor: Node, regions) -> bool:
    """An Erf (GELU's), or a Tanh whose region cubes x or scales by 0.044715."""
    if anchor.op == "Erf":
        return True
    for r in regions:
        for n in r.nodes:
            consts = [scalar_const(g, i) for i in n.inputs if i]
            if n.op == "Pow" and 3.0 in consts or any(c is not None and abs(c - 0.044715) < 1e-3 for c in consts):
                return True
    return False


def _try_fuse(g: Graph, anchor: Node) -> bool:
    approx = "none" if anchor.op == "Erf" else "tanh"
    tried, failed = [], None
    for x in _ancestor_tensors(g, anchor, _BACK):
        xt = g.tensors[x]
        if not np.issubdtype(xt.dtype, np.floating):
            continue  # (a dynamic x is fine: the region is elementwise, checked at the sample shape)
        best = None
        for region in single_input_regions(g, x, anchor, _FORWARD):
            tried.append(region)
            why = verify_gelu(g, region, x, approx)
            if why is None:
                best = region
            elif failed is None or len(region.nodes) > len(failed[0].nodes):
                failed = (region, why)
        if best is not None:
            new = Node("Gelu", g.fresh(f"{anchor.name}_gelu"), [x], [best.output], {"approximate": approx})
            g.replace_nodes(best.nodes, [new])
            return True
    if failed is not None and _looks_like_gelu(g, anchor, tried):
        reject("gelu", anchor, failed[0].nodes, failed[1])
    return False


def fuse_gelu(g: Graph) -> bool:
    """Replace every Erf- or Tanh-form GELU by one Gelu node."""
    changed = False
    for a in [n for n in g.nodes if n.op in ("Erf", "Tanh")]:
        if any(n is a for n in g.nodes) and _try_fuse(g, a):
            changed = True
    return changed
