"""Where each tensor is stored: the part of lowering that reads the hardware graph alone.

:func:`analyse_roots` runs, on a hardware graph (:func:`fpga.compile.graph.hardware_graph`),
what :class:`~fpga.compile.lower.Lowering` needs before its walk and what no
configuration field changes:

* the views (:func:`fpga.compile.views.analyse_views`): the root and element ids of
  every non-constant tensor, and which nodes are views;
* a ``Concat`` of several roots stored as one matrix: every input that is a linear
  layer's output is re-rooted into it (written in place), constant inputs are filled
  from the image (``concat_fills``); if any input cannot be, the Concat is a compute
  node (the lowering runs it on the host);
* an attention output that only one tensor's views read is stored in that tensor's
  layout (the ``[tokens, heads * dim]`` matrix the output projection reads);
* the column runs each attention head reads or writes (``runs``: they start at a word).

The result, :class:`Roots`, is never modified by a lowering (it copies the dicts it
changes; the id arrays are read-only), so one analysis serves every configuration that
shares the hardware graph (:class:`fpga.compile.reuse.CompileReuse`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.ir import Graph, Node

from .views import View, analyse_views, ids_through, is_view_node, sink_into

__all__ = ["Roots", "analyse_roots", "natural_ids"]


@dataclass(frozen=True)
class Roots:
    """The storage analysis of one hardware graph (see the module docstring).

    Members
    -------
    views : dict tensor -> View
        Root and element ids (read-only arrays) of every non-constant tensor.
    view_nodes : frozenset of str
        Nodes that are views (no instruction).
    producer : dict root -> Node
        The node that writes each stored root.
    concat_fills : dict Concat output -> list of (constant tensor, flat positions)
        Constant inputs of a stored Concat, by the elements of the Concat they fill.
    runs : dict root -> list of (first column, columns)
        Column runs an attention head reads or writes.
    consumers, producers : dict
        ``Graph.consumers()`` and ``Graph.producers()`` of the graph.
    """

    views: dict
    view_nodes: frozenset
    producer: dict
    concat_fills: dict
    runs: dict
    consumers: dict
    producers: dict


def natural_ids(node: Node, ids: np.ndarray) -> np.ndarray:
    """An output's element ids arranged as the engine's ``[rows, cols]`` matrix."""
    if node.op == "Conv":
        nd = ids.ndim
        return np.moveaxis(ids, 1, nd - 1).reshape(-1, ids.shape[1])
    return ids.reshape(-1, ids.shape[-1] if ids.ndim else 1)


def analyse_roots(g: Graph) -> Roots:
    """The :class:`Roots` of the hardware graph ``g`` (``g`` is not modified)."""
    return _Analysis(g).result()


class _Analysis:
    def __init__(self, g: Graph):
        self.g = g
        self.cons = g.consumers()
        self.prod = g.producers()
        self.view_nodes = {n.name for n in g.nodes if is_view_node(g, n)}
        self.views, self.concats = analyse_views(g, self.view_nodes)
        self.producer: dict[str, Node] = {}
        for n in g.nodes:
            for o in n.outputs:
                if o and self.views.get(o) is not None and self.views[o].root == o:
                    self.producer[o] = n
        self.concat_fills: dict[str, list[tuple[str, np.ndarray]]] = {}
        self._sink_concats()
        self._sink_attention_outputs()
        self.runs = self._alignment_runs()

    def result(self) -> Roots:
        for v in self.views.values():
            v.ids.flags.writeable = False
        for fills in self.concat_fills.values():
            for _, where in fills:
                where.flags.writeable = False
        return Roots(self.views, frozenset(self.view_nodes), self.producer, self.concat_fills, self.runs,
                     self.cons, self.prod)

    def _sink_concats(self) -> None:
        """Store every input of a Concat root inside the Concat's matrix (a linear layer's
        output in consecutive rows, a constant as whole rows loaded from the image); if
        any input cannot be, the Concat runs on the host."""
        g = self.g
        for c, inputs in self.concats.items():
            node = self.prod[c]
            self.view_nodes.discard(node.name)
            tags, base, owners = [], 0, []
            for i in node.inputs:
                t = g.tensors[i]
                if t.is_const:
                    owners.append(("const", i, base, t.size))
                    tags.append(np.arange(t.size, dtype=np.int64).reshape(t.shape) + base)
                    base += t.size
                else:
                    v = self.views[i]
                    rsize = g.tensors[v.root].size
                    owners.append(("root", v.root, base, rsize))
                    tags.append(v.ids + base)
                    base += rsize
            out = ids_through(g, node, tags)[0].reshape(-1)
            cshape = g.tensors[c].shape
            ccols = int(cshape[-1])
            plan, ok = [], True
            for kind, who, b0, size in owners:
                sel = np.nonzero((out >= b0) & (out < b0 + size))[0]
                if len(sel) != size or len(np.unique(out[sel])) != size:
                    ok = False
                    break
                where = np.empty(size, dtype=np.int64)
                where[out[sel] - b0] = sel
                if kind == "const":
                    rows = where.reshape(-1, ccols) // ccols if size % ccols == 0 else None
                    if rows is None or np.any(where.reshape(-1, ccols) % ccols != np.arange(ccols)) \
                            or np.any(rows != rows[:, :1]):
                        ok = False
                        break
                    plan.append(("const", who, where))
                    continue
                pnode = self.producer.get(who)
                if pnode is None or pnode.op not in ("Linear", "Gemm", "Conv") or who in g.outputs:
                    ok = False
                    break
                nat = natural_ids(pnode, np.arange(size, dtype=np.int64).reshape(g.tensors[who].shape))
                pos = where[nat]
                if pos.shape[1] != ccols or np.any(pos % ccols != np.arange(ccols)[None, :]) \
                        or np.any(pos // ccols != pos[:, :1] // ccols):
                    ok = False
                    break
                plan.append(("root", who, where))
            if not ok:
                continue
            fills = []
            for kind, who, where in plan:
                if kind == "const":
                    fills.append((who, where))
                else:
                    pnode = self.producer.pop(who)
                    sink_into(self.views, who, where, c)
                    self.producer[c] = pnode
            self.concat_fills[c] = fills

    def _sink_attention_outputs(self) -> None:
        """Store an attention output in the layout of the one tensor its views lead to."""
        for n in self.g.nodes:
            if n.op != "Attention" or n.domain != "hwgen":
                continue
            o = n.outputs[0]
            if o in self.g.outputs:
                continue
            users = [t for t, v in self.views.items() if v.root == o and t != o and self._read_by_compute(t)]
            if self._read_by_compute(o) or len(users) != 1:
                continue
            u = users[0]
            ids = self.views[u].ids.reshape(-1)
            if ids.size != self.g.tensors[o].size or len(np.unique(ids)) != ids.size:
                continue
            where = np.empty(ids.size, dtype=np.int64)
            where[ids] = np.arange(ids.size)
            sink_into(self.views, o, where, u)
            self.producer[u] = n
            self.producer.pop(o, None)

    def _read_by_compute(self, t: str) -> bool:
        return t in self.g.outputs or any(n.name not in self.view_nodes for n in self.cons.get(t, []))

    def _alignment_runs(self) -> dict[str, list[tuple[int, int]]]:
        """Column runs of roots that an attention head reads or writes (must start at a word)."""
        runs: dict[str, list[tuple[int, int]]] = {}
        for n in self.g.nodes:
            if n.op != "Attention" or n.domain != "hwgen" or len([i for i in n.inputs if i]) != 3:
                continue
            for t, transpose in ((n.inputs[0], False), (n.inputs[1], True), (n.inputs[2], False), (n.outputs[0], False)):
                v = self.views.get(t)
                if v is None or v.ids.ndim < 2:
                    continue
                ids = np.swapaxes(v.ids, -1, -2) if transpose else v.ids
                cols = self._root_cols(v.root)
                if cols is None:
                    continue
                for head in ids.reshape(-1, ids.shape[-2], ids.shape[-1]):
                    c = head[0] % cols
                    if np.all(head // cols == (head[:, :1] // cols)) and np.all(c == c[0] + np.arange(len(c))):
                        runs.setdefault(v.root, []).append((int(c[0]), len(c)))
        return runs

    def _root_cols(self, root: str) -> int | None:
        t = self.g.tensors.get(root)
        if t is None or not t.shape:
            return None
        node = self.producer.get(root)
        if node is not None and node.op == "Conv" and node.outputs[0] == root:
            return None
        return int(t.shape[-1])
