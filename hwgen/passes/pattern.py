"""Tools for pattern-recognising passes: regions of a graph and their numeric check.

A fusion in hwgen is found in two steps. First a *structural* search picks a candidate
region (a set of nodes with one output) loosely, so that the many ways exporters spell
the same function all qualify; then the region is *evaluated* on sample inputs and
compared with the fused op. Only a region that computes the fused op's function is
replaced. This keeps every pass float-exact (within float32 rounding) by construction,
whatever the exporter, instead of by an ever-growing list of exact node patterns.

The check runs on :func:`probe_inputs`: several seeds, rows of realistic and varied
scale (standard deviations from 10**-2.5 to 10**2, offsets of the same order), so that
an epsilon, a scale or an axis that is slightly off changes the numbers by far more than
float32 rounding. A region that looked like a pattern but failed its check is reported
by :func:`reject` (a :class:`~hwgen.errors.FusionRejectedWarning` that ``hwgen
inspect`` lists with the pattern, the nodes and why).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np

from ..errors import FusionRejectedWarning
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
    "mismatch",
    "probe_inputs",
    "reject",
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


def mismatch(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> str | None:
    """None if :func:`close`, else what differs (shape, or the largest error and where)."""
    a, b = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    both_nan = np.isnan(a) & np.isnan(b)
    err = np.where(both_nan, 0.0, np.abs(a - b))
    excess = err - (atol + rtol * np.abs(b))
    if not np.any(np.isnan(excess) & ~both_nan) and np.all(np.nan_to_num(excess, nan=0.0) <= 0):
        return None
    i = np.unravel_index(int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess))), a.shape)
    return f"differs by {err[i]:.3g} at {tuple(int(v) for v in i)} ({a[i]:.6g} vs {b[i]:.6g})"


def probe_inputs(shape, dtype, seeds: int = 4, log_std: tuple[float, float] = (-2.5, 2.0), seed: int = 0) -> list[np.ndarray]:
    """``seeds`` arrays of ``shape`` whose rows (last axis) have a standard deviation
    drawn log-uniformly from ``10**log_std`` and a mean of the same order: the inputs
    a fusion's numeric check runs on."""
    shape = tuple(int(d) for d in shape)
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    out = []
    for k in range(seeds):
        rng = np.random.default_rng(1000 * seed + k)
        std = 10.0 ** rng.uniform(*log_std, size=(rows, 1))
        mean = std * rng.uniform(-2.0, 2.0, size=(rows, 1))
        x = mean + std * rng.standard_normal((rows, shape[-1] if shape else 1))
        out.append(x.reshape(shape).astype(dtype))
    return out


def reject(pattern: str, anchor: Node, nodes: Iterable[Node] | Iterable[str], why: str) -> bool:
    """Report that a region that looked like ``pattern`` around ``anchor`` is not fused,
    and why (a :class:`~hwgen.errors.FusionRejectedWarning`). Returns False."""
    names = [n if isinstance(n, str) else n.name for n in nodes]
    msg = f"fuse_{pattern}: {pattern}-like region at {anchor.op} node {anchor.name!r} ({len(names)} nodes) not fused: {why}"
    w = FusionRejectedWarning(msg)
    w.pattern, w.anchor, w.anchor_op, w.nodes, w.reason = pattern, anchor.name, anchor.op, names, why
    warnings.warn(w, stacklevel=3)
    return False
