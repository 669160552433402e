"""hwgen's hardware IR: one graph of typed tensors and ops.

* A :class:`Tensor` has a name, a static shape, a numpy dtype, optionally constant data
  (initializers and folded constants) and optionally a fixed-point format (used by the
  bit-accurate interpreter and by the FPGA target).
* A :class:`Node` is one op: ONNX op types keep their ONNX names and attributes
  (``"MatMul"``, ``"Conv"``, ...); the ops that passes create are listed in
  :data:`FUSED_OPS` (``"LayerNormalization"`` and ``"Gelu"`` keep their ONNX meaning,
  ``"Attention"`` and ``"MoE"`` are hwgen's, with ``domain="hwgen"``; their semantics
  are in :mod:`hwgen.interp.fused` and :mod:`hwgen.interp.moe`).
* A :class:`Graph` owns tensors and a topologically ordered list of nodes.

The graph is mutable; passes edit it in place through the small set of helpers below
and call :meth:`Graph.check` (the spec check) afterwards.
"""

from __future__ import annotations

import copy as _copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .fixedpoint import FixedFormat

__all__ = ["Tensor", "Node", "Graph", "FUSED_OPS", "IRError"]

#: Ops that hwgen's passes create (on top of the ONNX op set).
FUSED_OPS = frozenset({"LayerNormalization", "Gelu", "Attention", "MoE"})


class IRError(ValueError):
    """The graph breaks an IR invariant (a bug in a pass, or a bad model)."""


@dataclass
class Tensor:
    """A value in the graph.

    Members
    -------
    name : str
    shape : tuple[int, ...]
        Static shape; every dimension is a non-negative int.
    dtype : numpy.dtype
    data : numpy.ndarray or None
        Constant value (initializer or folded constant), else None.
    fmt : FixedFormat or None
        Fixed-point format for ``numerics="fixed"``; None for integer/bool tensors.
    dynamic : bool
        The shape depends on the data (downstream of ``NonZero``); ``shape`` is the one
        seen on the frontend's sample run. Targets accept no dynamic tensors.
    grid : hwgen.passes.qdq_formats.Need or None
        The quantization grid a folded ``DequantizeLinear`` constant lies on (fraction and
        integer bits its format needs); formats read it.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None
    fmt: FixedFormat | None = None
    dynamic: bool = False
    grid: Any = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    """One op application.

    ``inputs`` may hold ``""`` for an omitted optional input (ONNX convention).
    """

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    def __repr__(self) -> str:
        return f"Node({self.op} {self.name!r}: {self.inputs} -> {self.outputs})"


#: Input positions of the ops that read a quantized model's integer weights.
_QUANTIZED_WEIGHT_INPUTS = {"DequantizeLinear": (0,), "MatMulInteger": (1,), "ConvInteger": (1,),
                            "QLinearMatMul": (3,), "QLinearConv": (3, 8)}


class Graph:
    """A static-shaped dataflow graph.

    Members
    -------
    name : str
    tensors : dict[str, Tensor]
    nodes : list[Node]
        In topological order (kept so by :meth:`toposort`).
    inputs, outputs : list[str]
        Graph input and output tensor names, in ONNX order.
    opset : int
        Default-domain opset of the source model.
    source : str
        Path of the source model (for error messages and reports).
    """

    def __init__(self, name: str = "graph", opset: int = 17, source: str = "") -> None:
        self.name = name
        self.opset = opset
        self.source = source
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._uid = 0

    # --- construction -------------------------------------------------------------
    def add_tensor(self, t: Tensor) -> Tensor:
        self.tensors[t.name] = t
        return t

    def add_const(self, name: str, data: np.ndarray, fmt: FixedFormat | None = None) -> Tensor:
        data = np.asarray(data)
        name = self.fresh(name) if name in self.tensors else name
        return self.add_tensor(Tensor(name, tuple(int(d) for d in data.shape), data.dtype, data, fmt))

    def fresh(self, stem: str) -> str:
        """A tensor/node name not used yet, starting with ``stem``."""
        taken = self.tensors.keys() | {n.name for n in self.nodes}
        while True:
            self._uid += 1
            cand = f"{stem}__{self._uid}"
            if cand not in taken:
                return cand

    # --- queries ------------------------------------------------------------------
    def producers(self) -> dict[str, Node]:
        """Map tensor name -> the node producing it."""
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        """Map tensor name -> nodes reading it (in node order)."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def const(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    def op_histogram(self) -> Counter:
        return Counter(n.op for n in self.nodes)

    def parameter_count(self) -> int:
        """Number of parameters: constants with more than one element read by some node, float
        ones anywhere and integer ones where a quantized model keeps its weights (the codes a
        DequantizeLinear reads, the weight of MatMulInteger/ConvInteger/QLinearMatMul/QLinearConv);
        other integer constants are shapes and indices."""
        used = {i for n in self.nodes for i in n.inputs}
        quantized = {n.inputs[k] for n in self.nodes for k in _QUANTIZED_WEIGHT_INPUTS.get(n.op, ())
                     if k < len(n.inputs)}
        return sum(
            t.size
            for t in self.tensors.values()
            if t.is_const and t.size > 1 and t.name in used
            and (np.issubdtype(t.dtype, np.floating) or (np.issubdtype(t.dtype, np.integer) and t.name in quantized))
        )

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}: {len(self.nodes)} nodes, inputs={self.inputs}, outputs={self.outputs})"

    # --- editing ------------------------------------------------------------------
    def replace_nodes(self, old: Iterable[Node], new: Iterable[Node]) -> None:
        """Remove ``old`` nodes, add ``new`` ones, re-sort, drop dead tensors."""
        old_ids = {id(n) for n in old}
        self.nodes = [n for n in self.nodes if id(n) not in old_ids] + list(new)
        self.toposort()
        self.remove_dead()

    def rename_uses(self, old: str, new: str) -> None:
        """Make every reader of tensor ``old`` (and the graph outputs) read ``new``."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def toposort(self) -> None:
        """Order nodes topologically (stable); raise IRError on a cycle."""
        prod = {o: idx for idx, n in enumerate(self.nodes) for o in n.outputs if o}
        deps = [
            {prod[i] for i in n.inputs if i in prod and prod[i] != idx}
            for idx, n in enumerate(self.nodes)
        ]
        # a node reading its own output is a cycle too
        for idx, n in enumerate(self.nodes):
            if set(n.inputs) & set(n.outputs) - {""}:
                raise IRError(f"node {n.name!r} ({n.op}) reads its own output: the graph has a cycle")
        users: dict[int, list[int]] = {}
        for idx, d in enumerate(deps):
            for j in d:
                users.setdefault(j, []).append(idx)
        indeg = [len(d) for d in deps]
        import heapq

        ready = [i for i, d in enumerate(indeg) if d == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for u in users.get(i, []):
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(self.nodes):
            stuck = [self.nodes[i] for i in range(len(self.nodes)) if indeg[i] > 0]
            names = ", ".join(f"{n.name!r} ({n.op})" for n in stuck[:5])
            raise IRError(f"the graph has a cycle through {len(stuck)} nodes, e.g. {names}")
        self.nodes = [self.nodes[i] for i in order]

    def remove_dead(self) -> int:
        """Drop nodes whose outputs nobody needs, and unused tensors. Returns nodes removed."""
        needed = set(self.outputs)
        keep: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in needed for o in n.outputs if o):
                keep.append(n)
                needed.update(i for i in n.inputs if i)
        removed = len(self.nodes) - len(keep)
        self.nodes = keep[::-1]
        live = needed | set(self.inputs) | {o for n in self.nodes for o in n.outputs}
        for name in [t for t in self.tensors if t not in live]:
            del self.tensors[name]
        return removed

    def copy(self) -> "Graph":
        """A deep copy that shares constant arrays (they are never mutated in place)."""
        g = Graph(self.name, self.opset, self.source)
        g.tensors = {k: Tensor(t.name, t.shape, t.dtype, t.data, t.fmt, t.dynamic, t.grid) for k, t in self.tensors.items()}
        g.nodes = [Node(n.op, n.name, list(n.inputs), list(n.outputs), _copy.deepcopy(n.attrs), n.domain) for n in self.nodes]
        g.inputs, g.outputs, g._uid = list(self.inputs), list(self.outputs), self._uid
        return g

    # --- the spec check -------------------------------------------------------------
    def check(self) -> None:
        """Raise IRError unless every invariant holds.

        Invariants: every node input is a graph input, a constant or an earlier node's
        output; every tensor has a static non-negative shape; outputs are produced;
        nothing is produced twice.
        """
        defined = set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const}
        produced: set[str] = set()
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in defined:
                    raise IRError(f"node {n.name!r} ({n.op}) reads {i!r}, which is not defined before it")
            for o in n.outputs:
                if not o:
                    continue
                if o in produced or o in self.inputs:
                    raise IRError(f"tensor {o!r} is produced twice (again by node {n.name!r})")
                if o not in self.tensors:
                    raise IRError(f"node {n.name!r} ({n.op}) output {o!r} has no tensor entry")
                produced.add(o)
                defined.add(o)
        for o in self.outputs:
            if o not in defined:
                raise IRError(f"graph output {o!r} is never produced")
        for t in self.tensors.values():
            if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in t.shape):
                raise IRError(f"tensor {t.name!r} has a non-static shape {t.shape}")
