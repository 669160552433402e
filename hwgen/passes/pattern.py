"""Tools for pattern-recognising passes: regions of a graph and their numeric check.

A fusion in hwgen is found in two steps. First a *structural* search picks a candidate
region (a set of nodes with one output) loosely, so that the many ways exporters spell
the same function all qualify; then the region is *evaluated* on sample inputs and
compared with the fused op. Only a region that computes the fused op's function is
replaced. This keeps every pass float-exact (within float32 rounding) by construction,
whatever the exporter, instead of by an ever-growing list of exact node patterns.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..interp import run_node
from ..ir import Graph, Node

__all__ = [
    "Region",
    "region_between",
    "single_input_regions",
    "region_is_closed",
    "eval_nodes",
    "descendants",
    "immediate_post_dominator",
    "scalar_const",
    "close",
]


class Region:
    """An ordered list of nodes with the tensors that enter it and the one that leaves."""

    def __init__(self, nodes: list[Node], inputs: list[str], output: str) -> None:
        self.nodes, self.inputs, self.output = nodes, inputs, output

    def __repr__(self) -> str:
        return f"Region({len(self.nodes)} nodes, inputs={self.inputs}, output={self.output!r})"


def descendants(g: Graph, start: str | Iterable[str], limit: int | None = None) -> list[Node]:
    """Nodes that depend on tensor(s) ``start``, in topological order (at most ``limit``)."""
    reached = {start} if isinstance(start, str) else set(start)
    out: list[Node] = []
    for n in g.nodes:
        if any(i in reached for i in n.inputs):
            out.append(n)
            reached.update(o for o in n.outputs if o)
            if limit is not None and len(out) >= limit:
                break
    return out


def region_between(g: Graph, source: str, output: str) -> Region | None:
    """The nodes that depend on ``source`` and that ``output`` depends on.

    Returns None if ``output`` does not depend on ``source``. The region's inputs are
    ``source`` followed by the non-constant tensors from outside that it reads.
    """
    desc_tensors = {source}
    desc_nodes: list[Node] = []
    for n in g.nodes:
        if any(i in desc_tensors for i in n.inputs):
            desc_nodes.append(n)
            desc_tensors.update(o for o in n.outputs if o)
    if output not in desc_tensors:
        return None
    needed = {output}
    nodes: list[Node] = []
    for n in reversed(desc_nodes):
        if any(o in needed for o in n.outputs):
            nodes.append(n)
            needed.update(i for i in n.inputs if i in desc_tensors)
    nodes.reverse()
    made = {o for n in nodes for o in n.outputs}
    ext: list[str] = [source]
    for n in nodes:
        for i in n.inputs:
            if i and i not in made and i not in ext and not g.tensors[i].is_const:
                ext.append(i)
    return Region(nodes, ext, output)


def single_input_regions(g: Graph, x: str, anchor: Node, window: int):
    """Closed regions that read only ``x`` (and constants), contain ``anchor`` and end at
    a tensor of ``x``'s shape among the ``window`` nodes from ``anchor`` on, in
    topological order (so the last one is the largest)."""
    shape = g.tensors[x].shape
    for n in [anchor] + descendants(g, anchor.outputs[0], window):
        y = n.outputs[0]
        if g.tensors[y].shape != shape:
            continue
        region = region_between(g, x, y)
        if region is not None and region.inputs == [x] and anchor in region.nodes and region_is_closed(g, region):
            yield region


def region_is_closed(g: Graph, region: Region) -> bool:
    """True if no tensor made inside ``region`` (but its output) is read outside it."""
    inside = {id(n) for n in region.nodes}
    cons = g.consumers()
    for n in region.nodes:
        for o in n.outputs:
            if not o or o == region.output:
                continue
            if o in g.outputs or any(id(c) not in inside for c in cons.get(o, [])):
                return False
    return True


def eval_nodes(g: Graph, nodes: Sequence[Node], feeds: dict[str, np.ndarray], wanted: Iterable[str]) -> list[np.ndarray]:
    """Run ``nodes`` (in order) on ``feeds`` plus the graph's constants; return ``wanted``."""
    env = dict(feeds)
    for n in nodes:
        args = []
        for i in n.inputs:
            if not i:
                args.append(None)
            elif i in env:
                args.append(env[i])
            else:
                args.append(g.tensors[i].data)
        for name, val in zip(n.outputs, run_node(n, args, g.opset)):
            if name:
                env[name] = val
    return [env[w] for w in wanted]


def immediate_post_dominator(g: Graph, node: Node, accept=None, limit: int = 4000) -> str | None:
    """The first tensor (in topological order) through which every path from ``node``'s
    outputs to the graph outputs passes: the merge point of all that ``node``
    influences. ``accept(tensor_name) -> bool`` filters candidates. None if none.
    """
    start = {o for o in node.outputs if o}
    cand = [o for n in descendants(g, start, limit) for o in n.outputs if o]
    outputs = set(g.outputs)
    for t in cand:
        if accept is not None and not accept(t):
            continue
        reached = set(start)
        for n in g.nodes:
            if any(i in reached for i in n.inputs):
                reached.update(o for o in n.outputs if o and o != t)
        escaped = (reached - {t}) & outputs
        if not escaped:  # nothing reaches a graph output around t
            return t
    return None


def scalar_const(g: Graph, name: str) -> float | None:
    """The value of a one-element constant tensor, else None."""
    t = g.tensors.get(name)
    if t is None or t.data is None or t.data.size != 1:
        return None
    return float(np.asarray(t.data).reshape(-1)[0])


def close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Float32-rounding closeness used to accept a fused region."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))
