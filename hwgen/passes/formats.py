"""Assign fixed-point formats to the tensors of a graph.

Edge-MoE's choice is the default: every floating activation (and every other float
constant: biases, LayerNorm scales, ...) is ``fixed<32,10>``; the weight operand of the
linear ops (``MatMul`` input 1 when constant, ``Gemm`` B, ``Conv`` W, ``hwgen.Linear`` W, a constant gate
and the expert weights of ``hwgen.MoE``) is ``fixed<16,2>``. A float cast from an integer tensor gets an
integer format of the source type's range. Integer and boolean tensors carry no format. A
format already set on a tensor is kept, so a user or a later pass can override any one.

Quantized models (:mod:`hwgen.passes.qdq_formats`): a tensor around a ``QuantizeLinear`` or
``DequantizeLinear``, a folded quantized weight and a run-time scale need the fraction bits
of their grid. By default such a tensor gets the finer of the default format and its need;
with ``keep_resolving=True`` (a target whose engines compute in the two default formats
only) it keeps the default where that resolves the grid (a quarter step:
``MIN_GUARD_BITS``) and gets the finer format elsewhere, where the target then runs it on
the host.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import ACT_DEFAULT, WEIGHT_DEFAULT, FixedFormat
from ..ir import Graph
from .qdq_formats import quant_needs

__all__ = ["assign_formats", "weight_tensors"]

#: (op, input index) pairs whose constant operand is a linear-layer weight
_WEIGHT_OPERANDS = {("MatMul", 1), ("Gemm", 1), ("Conv", 1), ("Linear", 1), ("MoE", 1), ("MoE", 3), ("MoE", 5)}


def weight_tensors(g: Graph) -> set[str]:
    """Names of the constant tensors used as linear-layer weights."""
    out = set()
    for n in g.nodes:
        for k, name in enumerate(n.inputs):
            if name and (n.op, k) in _WEIGHT_OPERANDS and g.tensors[name].is_const:
                out.add(name)
    return out


def assign_formats(g: Graph, act: FixedFormat = ACT_DEFAULT, weight: FixedFormat = WEIGHT_DEFAULT, *,
                   keep_resolving: bool = False) -> Graph:
    """Set ``Tensor.fmt`` on every floating tensor without one (in place); return ``g``.

    ``keep_resolving``: a quantized tensor keeps ``act``/``weight`` where that resolves its
    grid, instead of the finer of the two (see the module docstring).
    """
    weights = weight_tensors(g)
    integers = _integer_casts(g)
    needs = quant_needs(g, act, weights)
    for t in g.tensors.values():
        if t.fmt is not None or not np.issubdtype(np.dtype(t.dtype), np.floating):
            continue
        default = weight if t.name in weights else act
        need = needs.get(t.name)
        if t.name in integers:
            t.fmt = integers[t.name]
        elif need is None or (keep_resolving and need.resolved_by(default)):
            t.fmt = default
        else:
            t.fmt = need.merged(default)
    return g


def _integer_casts(g: Graph) -> dict[str, FixedFormat]:
    """Float tensors cast from integers (a quantized model's int32 accumulator cast to float
    before its scale, say) hold integers of the source type's range: an integer format
    ``fixed<w,w>`` of that range (``w`` = its bits, +1 for unsigned, at most 48) keeps them
    exact, where the activation format would saturate them (±512 for ``fixed<32,10>``)."""
    out = {}
    for n in g.nodes:
        if n.op != "Cast" or n.domain or not n.inputs or n.inputs[0] not in g.tensors:
            continue
        src = np.dtype(g.tensors[n.inputs[0]].dtype)
        if not np.issubdtype(src, np.integer) and src != np.bool_:
            continue
        bits = 1 if src == np.bool_ else 8 * src.itemsize + (not np.issubdtype(src, np.signedinteger))
        w = min(48, max(2, bits))
        out[n.outputs[0]] = FixedFormat(w, w)
    return out
