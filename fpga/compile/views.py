"""Layout ops as views: which element of which stored tensor each tensor element is.

Exporters spell a transformer's data movement in many ways (``view``/``permute``,
``reshape``/``transpose``/``unbind``, ``split``/``chunk``, ``select``, ``cat``), none
of which moves data on the accelerator: the engines read and write strided windows of
stored matrices. So instead of matching op sequences, the compiler runs every layout op
on *element ids*: the id array of a stored tensor (a *root*) is ``arange(size)``, and the
op's own reference kernel applied to id arrays gives, for every element of its output,
the id of the root element it is. Any exporter's spelling of the same movement gives the
same ids.

A tensor is a root when a compute op (or the host) produces it, when it is a graph input
or constant, or when it is a ``Concat`` of several roots. :func:`analyse_views` returns
``{tensor: View(root, ids)}`` for every non-constant tensor.

Re-rooting (:func:`sink_into`): a root whose every element ends up, through views, in
another tensor can be *stored there* instead (an attention output stored directly in the
``[tokens, heads * dim]`` layout that the output projection reads; patch embeddings
stored in rows 1.. of the ``Concat`` with the class token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.interp.registry import FLOAT_OPS
from hwgen.ir import Graph, Node

__all__ = ["VIEW_OPS", "View", "is_view_node", "analyse_views", "sink_into", "ids_through"]

#: Ops that only move elements (with constant parameters). Concat is one when its
#: inputs are views of one root; otherwise its output becomes a root.
VIEW_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Gather", "Slice",
                      "Split", "Expand", "Concat", "Dropout"})


@dataclass
class View:
    """``ids[...]`` (the tensor's shape) are flat element indices of ``root``."""

    root: str
    ids: np.ndarray


def is_view_node(g: Graph, n: Node) -> bool:
    """A layout op whose only non-constant input is its data input (input 0; all inputs of Concat)."""
    if n.domain or n.op not in VIEW_OPS:
        return False
    data = n.inputs if n.op == "Concat" else n.inputs[:1]
    params = [] if n.op == "Concat" else n.inputs[1:]
    if any(i and not g.tensors[i].is_const for i in params):
        return False
    if n.op == "Dropout" and len([o for o in n.outputs if o]) > 1:
        return False
    if any(g.tensors[i].dynamic for i in data if i) or any(g.tensors[o].dynamic for o in n.outputs if o):
        return False
    return any(i and not g.tensors[i].is_const for i in data)


def ids_through(g: Graph, n: Node, ids: list[np.ndarray | None]) -> list[np.ndarray]:
    """Run view node ``n``'s reference kernel on id arrays (``None`` for constant inputs)."""
    args = [x if x is not None else (g.tensors[i].data if i else None) for x, i in zip(ids, n.inputs)]
    if n.op == "Dropout":
        return [args[0]]
    outs = FLOAT_OPS[n.op](n, args, g.opset)
    return [np.asarray(o) for o in outs]


def analyse_views(g: Graph, view_nodes: set[str]) -> tuple[dict[str, View], dict[str, list[str]]]:
    """Roots and element ids of every non-constant tensor.

    ``view_nodes`` names the nodes to treat as views (the caller decides; a view whose
    input lives on the host is still a view). Returns ``(views, concat_inputs)`` where
    ``concat_inputs[c]`` lists the input tensors of a Concat whose output ``c`` became a
    root because its inputs come from different roots (or include constants).
    """
    views: dict[str, View] = {}
    concat_inputs: dict[str, list[str]] = {}
    for name in g.inputs:
        t = g.tensors[name]
        views[name] = View(name, np.arange(t.size, dtype=np.int64).reshape(t.shape))
    for n in g.nodes:
        outs = [o for o in n.outputs if o]
        if n.name in view_nodes:
            data = n.inputs if n.op == "Concat" else n.inputs[:1]
            roots = {views[i].root for i in data if i and i in views}
            consts = [i for i in data if i and g.tensors[i].is_const]
            if len(roots) == 1 and not consts:
                root = roots.pop()
                ids = [views[i].ids if i in views else None for i in n.inputs]
                if n.op != "Concat":
                    ids = [ids[0]] + [None] * (len(n.inputs) - 1)
                for o, arr in zip(n.outputs, ids_through(g, n, ids)):
                    if o:
                        views[o] = View(root, arr.astype(np.int64, copy=False))
                continue
            if n.op == "Concat":
                concat_inputs[outs[0]] = [i for i in n.inputs if i]
        for o in outs:  # a root
            t = g.tensors[o]
            views[o] = View(o, np.arange(t.size, dtype=np.int64).reshape(t.shape))
    return views, concat_inputs


def sink_into(views: dict[str, View], old: str, where: np.ndarray, new: str) -> None:
    """Re-root every view of ``old`` into ``new``; ``where[e]`` is the element of ``new``
    that stores element ``e`` of ``old`` (a flat array over ``old``'s elements)."""
    for t, v in list(views.items()):
        if v.root == old:
            views[t] = View(new, where[v.ids])
