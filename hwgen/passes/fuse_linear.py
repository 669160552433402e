"""Fuse ``MatMul(x, W)`` and the ``Add`` of its bias into one ``hwgen.Linear`` node.

A MatMul whose second operand is a constant ``[K, N]`` matrix and whose first is an
activation ``[..., K]`` is a linear layer; a following ``Add`` of a constant that
broadcasts only along the last axis (``[N]``, ``[1, N]``, ``[1, 1, N]``, ...) is its bias.
Both become ``hwgen.Linear(x, W, b)``; a MatMul without such an Add becomes
``hwgen.Linear(x, W)``.

Float results are unchanged (the op is MatMul then Add). In fixed point the fused op
rounds once, as the linear unit does (:mod:`hwgen.interp.linear`), so a target whose
hardware adds the bias inside the accumulator runs this pass before it takes its
bit-exact reference. Not in :data:`hwgen.passes.PIPELINE`: the canonical graph keeps the
ONNX ops; the FPGA target applies it.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node

__all__ = ["fuse_linear"]


def _bias_of(g: Graph, add: Node, y: str, n_out: int) -> str | None:
    """The constant operand of ``add`` if it is a bias over the last axis of ``y``."""
    other = [i for i in add.inputs if i != y]
    if len(other) != 1 or add.inputs.count(y) != 1:
        return None
    c = g.tensors[other[0]]
    if not c.is_const or not np.issubdtype(c.dtype, np.floating):
        return None
    shape = tuple(c.shape)
    if not shape or shape[-1] != n_out or any(d != 1 for d in shape[:-1]):
        return None
    if len(shape) > len(g.tensors[y].shape):
        return None  # the Add would broadcast y to a higher rank
    return other[0]


def fuse_linear(g: Graph) -> bool:
    """Rewrite linear layers as ``hwgen.Linear``; True if any was."""
    cons = g.consumers()
    changed = False
    for n in list(g.nodes):
        if n.op != "MatMul" or n.domain:
            continue
        x, w = n.inputs
        wt, xt = g.tensors[w], g.tensors[x]
        if not wt.is_const or xt.is_const or len(wt.shape) != 2 or len(xt.shape) < 1:
            continue
        if not np.issubdtype(wt.dtype, np.floating) or not np.issubdtype(xt.dtype, np.floating):
            continue
        y = n.outputs[0]
        users = cons.get(y, [])
        bias, out, old = None, y, [n]
        if len(users) == 1 and users[0].op == "Add" and y not in g.outputs:
            b = _bias_of(g, users[0], y, wt.shape[1])
            if b is not None:
                bias, out, old = b, users[0].outputs[0], [n, users[0]]
        if bias is not None and tuple(g.tensors[bias].shape) != (wt.shape[1],):
            name = g.fresh(f"{bias}_vector")
            g.add_const(name, np.asarray(g.tensors[bias].data).reshape(-1))
            bias = name
        inputs = [x, w] + ([bias] if bias is not None else [])
        new = Node("Linear", g.fresh(f"{n.name}_linear"), inputs, [out], {}, domain="hwgen")
        g.replace_nodes(old, [new])
        cons = g.consumers()
        changed = True
    return changed
