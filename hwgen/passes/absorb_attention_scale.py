"""Fold constant scalings of an attention's query and key into its ``scale``; drop a zero bias.

PyTorch's ``nn.MultiheadAttention`` and the decomposition of
``scaled_dot_product_attention`` multiply q (and k) by a constant before ``q @ k^T``
(e.g. both by ``d ** -0.25``) and may add an all-zero mask. For ``hwgen.Attention(q, kT,
v[, bias], scale=s)``: if ``q`` or ``kT`` is ``Mul(x, c)`` with a scalar constant ``c``
that nothing else reads, the node reads ``x`` and ``s`` becomes ``s * c`` (the same
function: ``softmax(s (c q) kT) = softmax((s c) q kT)``); a constant all-zero bias is
dropped. Targets with a scale register but no bias input then run such attention as is.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph

__all__ = ["absorb_attention_scale"]


def absorb_attention_scale(g: Graph) -> bool:
    prod, cons = g.producers(), g.consumers()
    changed = False
    for n in g.nodes:
        if n.op != "Attention" or n.domain != "hwgen":
            continue
        for k in (0, 1):
            mul = prod.get(n.inputs[k])
            if mul is None or mul.op != "Mul" or len(cons.get(n.inputs[k], [])) != 1 or n.inputs[k] in g.outputs:
                continue
            consts = [i for i in mul.inputs if g.tensors[i].is_const]
            if len(consts) != 1 or g.tensors[consts[0]].size != 1:
                continue
            x = next(i for i in mul.inputs if i != consts[0])
            if tuple(g.tensors[x].shape) != tuple(g.tensors[n.inputs[k]].shape):
                continue
            c = float(np.asarray(g.tensors[consts[0]].data).reshape(-1)[0])
            n.attrs["scale"] = float(n.attrs.get("scale", 1.0)) * c
            n.inputs[k] = x
            changed = True
        if len(n.inputs) > 3 and n.inputs[3]:
            b = g.tensors[n.inputs[3]]
            if b.is_const and not np.any(np.asarray(b.data)):
                n.inputs = n.inputs[:3]
                changed = True
    if changed:
        g.remove_dead()
    return changed
