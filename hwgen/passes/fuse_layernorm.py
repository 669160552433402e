"""Fuse a decomposed layer normalisation into one ``LayerNormalization`` node.

Exporters spell LayerNorm as ReduceMean, Sub, Pow or Mul, ReduceMean, Add(eps), Sqrt,
Div or Reciprocal+Mul, then Mul(gamma) and Add(beta), in varying orders. The search
starts at every ReduceMean over the last axis of a tensor ``x``, takes the tensors of
``x``'s shape that follow within a few nodes as candidate outputs, and keeps the last
one whose region (all nodes between ``x`` and it) is closed and computes
``LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)`` on
:func:`~hwgen.passes.pattern.probe_inputs` (rows whose variance ranges from far below
to far above eps, so a wrong eps shows). ``eps`` is the scalar added inside the region;
gamma and beta are the constant operands of the region's last Mul and Add (ones and
zeros if absent). A region that looks like a LayerNorm (two means, a square root) but
fails the check, or that normalises another axis than the last, is reported
(:func:`~hwgen.passes.pattern.reject`).
"""

from __future__ import annotations

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node
from .pattern import eval_nodes, mismatch, probe_inputs, reject, scalar_const, single_input_regions

__all__ = ["fuse_layernorm", "verify_layernorm"]

_WINDOW = 12  # nodes after the first ReduceMean that may belong to the pattern


def _reduced_axes(g: Graph, n: Node) -> list[int] | None:
    rank = len(g.tensors[n.inputs[0]].shape)
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        axes = g.const(n.inputs[1])
    if axes is None or int(n.attrs.get("keepdims", 1)) != 1:
        return None
    return sorted(int(a) % rank for a in np.asarray(axes).reshape(-1))


def _looks_like_layernorm(region) -> bool:
    """Two means and a square root (or a power) in the region: a normalisation."""
    ops = [n.op for n in region.nodes]
    return ops.count("ReduceMean") >= 2 and any(op in ("Sqrt", "Pow", "Reciprocal") for op in ops)


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


def verify_layernorm(g: Graph, region, x: str, eps: float, gamma_v: np.ndarray, beta_v: np.ndarray, axis: int = -1) -> str | None:
    """None if ``region`` computes ``LayerNormalization(x, gamma, beta, axis, eps)`` on
    the probe inputs, else what differs."""
    xt = g.tensors[x]
    d = xt.shape[-1]
    probe = Node("LayerNormalization", "probe", [x, "g", "b"], [region.output], {"axis": axis, "epsilon": float(eps)})
    for k, s in enumerate(probe_inputs(xt.shape, xt.dtype)):
        want = run_node(probe, [s, gamma_v.reshape(d), beta_v.reshape(d)], g.opset)[0]
        why = mismatch(eval_nodes(g, region.nodes, {x: s}, [region.output])[0], want)
        if why is not None:
            return f"LayerNormalization(axis={axis}, epsilon={eps:.3g}) on probe {k}: {why}"
    return None


def _try_fuse(g: Graph, rm: Node) -> bool:
    x = rm.inputs[0]
    xt = g.tensors[x]
    if not np.issubdtype(xt.dtype, np.floating) or not xt.shape or xt.dynamic:
        return False
    d = xt.shape[-1]
    best, failed = None, None
    for region in single_input_regions(g, x, rm, _WINDOW):
        eps = next(
            (v for m in region.nodes if m.op == "Add" for i in m.inputs if (v := scalar_const(g, i)) is not None),
            0.0,
        )
        gamma, beta = _affine(g, region, d)
        gamma_v = g.const(gamma) if gamma else np.ones(d, xt.dtype)
        beta_v = g.const(beta) if beta else np.zeros(d, xt.dtype)
        why = verify_layernorm(g, region, x, eps, gamma_v, beta_v)
        if why is None:
            best = (region, eps, gamma, beta, gamma_v, beta_v)
        elif _looks_like_layernorm(region):
            failed = (region, why)
    if best is None:
        if failed is not None:
            reject("layernorm", rm, failed[0].nodes, failed[1])
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


def _report_other_axis(g: Graph, rm: Node, axes: list[int]) -> None:
    """A LayerNorm-shaped region over another axis than the last: say why it stays."""
    x = rm.inputs[0]
    if g.tensors[x].dynamic or not g.tensors[x].shape:
        return
    regions = [r for r in single_input_regions(g, x, rm, _WINDOW) if _looks_like_layernorm(r)]
    if regions:
        reject("layernorm", rm, regions[-1].nodes, f"it normalises axes {axes}; the fusion takes the last axis only")


def fuse_layernorm(g: Graph) -> bool:
    """Replace every decomposed LayerNorm by one LayerNormalization node."""
    changed = False
    for rm in [n for n in g.nodes if n.op == "ReduceMean"]:
        if not any(n is rm for n in g.nodes):
            continue
        axes = _reduced_axes(g, rm)
        if axes is None:
            continue
        rank = len(g.tensors[rm.inputs[0]].shape)
        if axes == [rank - 1]:
            changed |= _try_fuse(g, rm)
        elif len(axes) == 1:
            _report_other_axis(g, rm, axes)
    return changed
