"""Fuse a decomposed layer normalisation into one ``LayerNormalization`` node.

Exporters spell LayerNorm as ReduceMean, Sub, Pow or Mul, ReduceMean, Add(eps), Sqrt,
Div or Reciprocal+Mul, then Mul(gamma) and Add(beta), in varying orders. The search
starts at every ReduceMean over the last axis of a tensor ``x``, takes the tensors of
``x``'s shape that follow within a few nodes as candidate outputs, and keeps the last
one whose region (all nodes between ``x`` and it) is closed and computes
``LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)`` on sample inputs. ``eps``
is the scalar added inside the region; gamma and beta are the constant operands of the
region's last Mul and Add (ones and zeros if absent).
"""

from __future__ import annotations

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node
from .pattern import close, eval_nodes, scalar_const, single_input_regions

__all__ = ["fuse_layernorm"]

_WINDOW = 12  # nodes after the first ReduceMean that may belong to the pattern


def _reduces_last_axis(g: Graph, n: Node) -> bool:
    rank = len(g.tensors[n.inputs[0]].shape)
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        axes = g.const(n.inputs[1])
    if axes is None:
        return False
    axes = [int(a) % rank for a in np.asarray(axes).reshape(-1)]
    return axes == [rank - 1] and int(n.attrs.get("keepdims", 1)) == 1


def _affine(g: Graph, region, d: int):
    """gamma, beta: constant [D] operands of the region's final Mul / Add."""
    gamma = beta = None
    prod = {o: n for n in region.nodes for o in n.outputs}
    n = prod.get(region.output)
    if n is not None and n.op == "Add":
        consts = [i for i in n.inputs if g.tensors[i].is_const and g.tensors[i].size == d]
        if len(consts) == 1:
            beta = consts[0]
            n = prod.get(next(i for i in n.inputs if i != beta))
    if n is not None and n.op == "Mul":
        consts = [i for i in n.inputs if g.tensors[i].is_const and g.tensors[i].size == d]
        if len(consts) == 1:
            gamma = consts[0]
    return gamma, beta


def _try_fuse(g: Graph, rm: Node) -> bool:
    x = rm.inputs[0]
    xt = g.tensors[x]
    if not np.issubdtype(xt.dtype, np.floating) or not xt.shape or xt.dynamic:
        return False
    d = xt.shape[-1]
    rng = np.random.default_rng(0)
    sample = (rng.standard_normal((2,) + xt.shape) * 3 + 1).astype(xt.dtype)
    best = None
    for region in single_input_regions(g, x, rm, _WINDOW):
        y = region.output
        eps = next(
            (v for m in region.nodes if m.op == "Add" for i in m.inputs if (v := scalar_const(g, i)) is not None),
            0.0,
        )
        gamma, beta = _affine(g, region, d)
        gamma_v = g.const(gamma) if gamma else np.ones(d, xt.dtype)
        beta_v = g.const(beta) if beta else np.zeros(d, xt.dtype)
        probe = Node("LayerNormalization", "probe", [x, "g", "b"], [y], {"axis": -1, "epsilon": eps})
        ok = all(
            close(
                eval_nodes(g, region.nodes, {x: s}, [y])[0],
                run_node(probe, [s, gamma_v.reshape(d), beta_v.reshape(d)], g.opset)[0],
            )
            for s in sample
        )
        if ok:
            best = (region, eps, gamma, beta, gamma_v, beta_v)
    if best is None:
        return False
    region, eps, gamma, beta, gamma_v, beta_v = best
    gname = gamma if gamma and g.tensors[gamma].shape == (d,) else g.add_const(f"{rm.name}_gamma", gamma_v.reshape(d).astype(xt.dtype)).name
    bname = beta if beta and g.tensors[beta].shape == (d,) else g.add_const(f"{rm.name}_beta", beta_v.reshape(d).astype(xt.dtype)).name
    new = Node(
        "LayerNormalization",
        g.fresh(f"{rm.name}_layernorm"),
        [x, gname, bname],
        [region.output],
        {"axis": -1, "epsilon": float(eps)},
    )
    g.replace_nodes(region.nodes, [new])
    return True


def fuse_layernorm(g: Graph) -> bool:
    """Replace every decomposed LayerNorm by one LayerNormalization node."""
    changed = False
    for rm in [n for n in g.nodes if n.op == "ReduceMean"]:
        if rm in g.nodes and _reduces_last_axis(g, rm) and _try_fuse(g, rm):
            changed = True
    return changed
