"""Constant folding and removal of no-op nodes.

``fold_constants`` evaluates every node whose inputs are all constants (and ``Shape``
/``Size`` of any tensor with a static shape) with the float reference interpreter and
replaces it by constant tensors; a folded ``DequantizeLinear`` keeps its scale's grid
in ``Tensor.grid`` (:mod:`hwgen.passes.qdq_formats`). Shape arithmetic that exporters
emit disappears this way, leaving Reshape/Expand/Slice with constant operands that
targets can read.
"""

from __future__ import annotations

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node

__all__ = ["fold_constants", "remove_identities", "MAX_FOLD_BYTES"]

#: Do not materialise a folded constant larger than this (bytes).
MAX_FOLD_BYTES = 64 << 20
_NO_OPS = {"Identity", "Dropout"}
#: Ops whose output holds some of their first input's values and no others
_GRID_KEEPING = {"Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Gather", "Expand",
                 "Tile"}


def _static_shape_value(g: Graph, n: Node) -> np.ndarray | None:
    t = g.tensors.get(n.inputs[0])
    if t is None or t.dynamic:
        return None
    shape = np.array(t.shape, dtype=np.int64)
    if n.op == "Size":
        return np.array(t.size, dtype=np.int64)
    rank = len(shape)
    start = int(n.attrs.get("start", 0))
    end = int(n.attrs.get("end", rank))
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return shape[start:end]


def fold_constants(g: Graph) -> bool:
    """Replace nodes computable at compile time by constants. Returns True if any was."""
    folded: list[Node] = []
    for n in g.nodes:
        if n.op in ("Shape", "Size"):
            val = _static_shape_value(g, n)
            if val is None:
                continue
            outs = [val]
        elif all((not i) or g.tensors[i].is_const for i in n.inputs):
            if n.op in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
                continue
            if any(g.tensors[o].nbytes > MAX_FOLD_BYTES for o in n.outputs if o in g.tensors):
                continue
            outs = run_node(n, [g.tensors[i].data if i else None for i in n.inputs], g.opset)
        else:
            continue
        grid = _dequantized_grid(g, n)
        for name, val in zip(n.outputs, outs):
            if name:
                t = g.tensors[name]
                t.data = np.asarray(val)
                t.shape, t.dtype, t.dynamic = tuple(t.data.shape), t.data.dtype, False
                t.grid = grid if name == n.outputs[0] else None
        folded.append(n)
    if folded:
        g.replace_nodes(folded, [])
    return bool(folded)


def _dequantized_grid(g: Graph, n: Node):
    """The grid of a constant ``DequantizeLinear``'s output (kept on the folded tensor, so
    that formats can still read the weight's scale), else None."""
    if n.domain:
        return None
    if n.op in _GRID_KEEPING and n.inputs[0]:
        return g.tensors[n.inputs[0]].grid  # a transposed or reshaped weight: the same values
    if n.op != "DequantizeLinear" or len(n.inputs) < 2:
        return None
    from .qdq_formats import dequantized_need

    q = g.tensors[n.inputs[0]].data
    zp = g.tensors[n.inputs[2]].data if len(n.inputs) > 2 and n.inputs[2] else None
    return dequantized_need(g.tensors[n.inputs[1]].data, zp, q.dtype, q)


def _is_noop(g: Graph, n: Node) -> bool:
    if n.op in _NO_OPS:
        return True
    if n.op in ("Cast", "CastLike") and n.inputs and n.outputs:
        src, dst = g.tensors.get(n.inputs[0]), g.tensors.get(n.outputs[0])
        return src is not None and dst is not None and np.dtype(src.dtype) == np.dtype(dst.dtype)
    return False


def remove_identities(g: Graph) -> bool:
    """Remove Identity, inference-mode Dropout (mask unused) and Casts to the same dtype."""
    removed: list[Node] = []
    cons = g.consumers()
    for n in g.nodes:
        if not n.outputs or not _is_noop(g, n):
            continue
        out = n.outputs[0]
        if out in g.outputs or any(o and cons.get(o) for o in n.outputs[1:]):
            continue
        g.rename_uses(out, n.inputs[0])
        removed.append(n)
    if removed:
        g.replace_nodes(removed, [])
    return bool(removed)
