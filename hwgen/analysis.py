"""Pure analyses of a graph: ``graph -> {node name: number}`` and summaries of them.

MACs count multiply-accumulates of the matrix ops (MatMul, hwgen.Linear, Gemm, Conv, Einsum of
two operands, hwgen.Attention, hwgen.MoE with only the top-k experts of each token active and a
gated expert's two first-layer projections counted); elementwise work is not counted.
Parameter counts are the float constants read by nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir import Graph, Node

__all__ = ["node_macs", "total_macs", "Patterns", "find_patterns"]


def _shape(g: Graph, name: str) -> tuple[int, ...]:
    return tuple(g.tensors[name].shape) if name else ()


def _matmul_macs(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    if len(a) == 1:
        a = (1,) + a
    if len(b) == 1:
        b = b + (1,)
    batch = np.broadcast_shapes(a[:-2], b[:-2]) if len(a) > 2 or len(b) > 2 else ()
    return int(np.prod(batch, dtype=np.int64)) * a[-2] * a[-1] * b[-1]


def node_macs(g: Graph, n: Node) -> int:
    """Multiply-accumulates of one node (0 for ops that are not matrix ops)."""
    if n.op == "MatMul" or (n.op == "Linear" and n.domain == "hwgen"):
        return _matmul_macs(_shape(g, n.inputs[0]), _shape(g, n.inputs[1]))
    if n.op == "Gemm":
        a, b = _shape(g, n.inputs[0]), _shape(g, n.inputs[1])
        m = a[1] if n.attrs.get("transA", 0) else a[0]
        k = a[0] if n.attrs.get("transA", 0) else a[1]
        nn = b[0] if n.attrs.get("transB", 0) else b[1]
        return m * k * nn
    if n.op == "Conv":
        w = _shape(g, n.inputs[1])
        y = _shape(g, n.outputs[0])
        return int(np.prod(y, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
    if n.op == "Einsum" and len(n.inputs) == 2:
        eq = n.attrs.get("equation", "").replace(" ", "")
        ins, _, _ = eq.partition("->")
        letters: dict[str, int] = {}
        for spec, name in zip(ins.split(","), n.inputs):
            if "..." in spec:
                return 0
            for c, d in zip(spec, _shape(g, name)):
                letters[c] = max(letters.get(c, 1), d)
        return int(np.prod(list(letters.values()), dtype=np.int64))
    if n.op == "Attention" and n.domain == "hwgen":
        q, kT, v = (_shape(g, i) for i in n.inputs[:3])
        return _matmul_macs(q, kT) + _matmul_macs(q[:-1] + (kT[-1],), v)
    if n.op == "MoE" and n.domain == "hwgen":
        x = _shape(g, n.inputs[0])
        tokens = int(np.prod(x[:-1], dtype=np.int64))
        d = x[-1]
        w1, w2 = _shape(g, n.inputs[3]), _shape(g, n.inputs[5])
        e = w1[0]
        k = int(n.attrs.get("top_k", 1))
        gate = tokens * d * e
        gated = 2 if len(n.inputs) > 7 and n.inputs[7] else 1  # w3: a second first-layer projection
        return gate + tokens * k * (gated * w1[1] * w1[2] + w2[1] * w2[2])
    return 0


def total_macs(g: Graph) -> int:
    return sum(node_macs(g, n) for n in g.nodes)


@dataclass
class Patterns:
    """What the canonicalisation passes found."""

    attention: list[dict] = field(default_factory=list)
    moe: list[dict] = field(default_factory=list)
    layernorm: int = 0
    gelu: int = 0


def find_patterns(g: Graph) -> Patterns:
    """Summarise the fused ops of a canonicalised graph."""
    p = Patterns()
    for n in g.nodes:
        if n.op == "Attention" and n.domain == "hwgen":
            q = _shape(g, n.inputs[0])
            p.attention.append(
                {"node": n.name, "heads": int(n.attrs.get("num_heads", 1)), "seq": q[-2], "head_dim": q[-1], "scale": n.attrs.get("scale", 1.0)}
            )
        elif n.op == "MoE" and n.domain == "hwgen":
            gate_b = n.inputs[2] if len(n.inputs) > 2 else ""
            p.moe.append(
                {
                    "node": n.name,
                    "experts": int(n.attrs.get("num_experts", _shape(g, n.inputs[3])[0])),
                    "top_k": int(n.attrs.get("top_k", 1)),
                    "normalization": str(n.attrs.get("normalization", "softmax_then_topk")),
                    "activation": str(n.attrs.get("activation", "gelu")),
                    "gated": len(n.inputs) > 7 and bool(n.inputs[7]),
                    "gate": n.inputs[1],
                    "gate_is_input_dependent": not g.tensors[n.inputs[1]].is_const,
                    "gate_bias": gate_b,
                    "gate_bias_is_input_dependent": bool(gate_b) and not g.tensors[gate_b].is_const,
                    "tokens": int(np.prod(_shape(g, n.inputs[0])[:-1], dtype=np.int64)),
                }
            )
        elif n.op == "LayerNormalization":
            p.layernorm += 1
        elif n.op == "Gelu":
            p.gelu += 1
    return p
