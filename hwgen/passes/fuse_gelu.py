"""Fuse Erf-form and Tanh-form GELU subgraphs into one ``Gelu`` node.

``x * 0.5 * (1 + erf(x / sqrt 2))`` (any association order, Div or Mul by the
constant) becomes ``Gelu(x)``; ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
becomes ``Gelu(x, approximate="tanh")``. The search starts at each Erf/Tanh node, takes
each non-constant tensor a few nodes before it as a candidate ``x`` and each tensor of
``x``'s shape a few nodes after it as a candidate output, and fuses the largest closed
region that computes GELU on sample inputs.
"""

from __future__ import annotations

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node
from .pattern import close, eval_nodes, single_input_regions

__all__ = ["fuse_gelu"]

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


def _try_fuse(g: Graph, anchor: Node) -> bool:
    approx = "none" if anchor.op == "Erf" else "tanh"
    rng = np.random.default_rng(1)
    for x in _ancestor_tensors(g, anchor, _BACK):
        xt = g.tensors[x]
        if not np.issubdtype(xt.dtype, np.floating):
            continue  # (a dynamic x is fine: the region is elementwise, checked at the sample shape)
        samples = [(rng.standard_normal(xt.shape) * 3).astype(xt.dtype) for _ in range(2)]
        probe = Node("Gelu", "probe", [x], ["y"], {"approximate": approx})
        want = [run_node(probe, [s], g.opset)[0] for s in samples]
        best = None
        for region in single_input_regions(g, x, anchor, _FORWARD):
            if all(close(eval_nodes(g, region.nodes, {x: s}, [region.output])[0], w) for s, w in zip(samples, want)):
                best = region
        if best is not None:
            new = Node("Gelu", g.fresh(f"{anchor.name}_gelu"), [x], [best.output], {"approximate": approx})
            g.replace_nodes(best.nodes, [new])
            return True
    return False


def fuse_gelu(g: Graph) -> bool:
    """Replace every Erf- or Tanh-form GELU by one Gelu node."""
    changed = False
    for a in [n for n in g.nodes if n.op in ("Erf", "Tanh")]:
        if a in g.nodes and _try_fuse(g, a):
            changed = True
    return changed
